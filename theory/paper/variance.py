"""The law of one round's spread, run through the implementation under test (Algorithm 1 with H = 1):

    Cov[X^{t+1} - X^t] = Sigma = (1/N^2) sum_i Cov_S[delta_i(S)],   delta_i(S) = -gamma grad f~_i(X; S)

(full batch; the clients' sketches independent and uniform). ``alg1.round_unbiased`` checks the mean
of the same rounds; an implementation can get the mean right and the spread wrong: one sketch shared
by every client (or sketches correlated across clients) keeps every client's marginal law, hence the
mean, but adds the cross-client covariances that independence removes; so does a sketch law with the
right first moment and the wrong second.

Test (rigorous at a fixed seed, no normal approximation). At the fixed points of
``alg1.round_unbiased`` (same rounds, shared), with the exact mean mu and the exact per-client laws
(every sketch enumerated), every statistic is a mean over M independent rounds of
Y_t = <Delta_t - mu, v>^2 (v: each coordinate, the mean direction u = mu/||mu||, the top eigenvector of
Sigma) or Y_t = ||Delta_t - mu||^2 (the trace). For a correct implementation E Y = v^T Sigma v (or
tr Sigma), and E Y^2 is exact too (fourth moments of independent centred clients y_i = c_i / N):

    E||sum y_i||^4 = sum_i E||y_i||^4 + sum_{i != k} (E||y_i||^2 E||y_k||^2 + 2 tr(Sigma_i Sigma_k)),

with 0 <= Y <= (sum_i max ||y_i||)^2. Bernstein's inequality on the M-round mean then gives a radius
per statistic; the D + 3 statistics are tested at level alpha / (D + 3) per point (Bonferroni),
family-wise false-alarm rate <= alpha. The evidence states the power: the smallest relative change
of tr Sigma the test detects.
"""
from __future__ import annotations

import numpy as np

from fslora_ref.config import FedConfig

from ..result import VERIFIED, VIOLATED, Result
from .objective import SCALING, random_points
from .round_samples import round_changes
from .unbiased import ALPHA, BUDGETS, LR, RANK, bernstein_radius, exact_law, problems


def _square_law(ys) -> tuple[float, float, float]:
    """(E Y, Var Y, bound on Y) for Y = (sum_i y_i)^2, y_i: per client (values over its sketches,) centred
    scalars, independent across clients, uniform over their values."""
    a = np.array([np.mean(y * y) for y in ys])
    four = sum(float(np.mean(y ** 4)) for y in ys)
    mean = float(a.sum())
    second = four + 3.0 * (mean ** 2 - float(np.sum(a * a)))
    top = float(sum(np.max(np.abs(y)) for y in ys)) ** 2
    return mean, max(second - mean ** 2, 0.0), top


def _trace_law(ys) -> tuple[float, float, float]:
    """(E Y, Var Y, bound on Y) for Y = ||sum_i y_i||^2, y_i: (values, D) centred, independent."""
    a = np.array([np.mean(np.sum(y * y, axis=1)) for y in ys])
    covs = [y.T @ y / y.shape[0] for y in ys]
    four = sum(float(np.mean(np.sum(y * y, axis=1) ** 2)) for y in ys)
    cross = sum(a[i] * a[k] + 2.0 * float(np.sum(covs[i] * covs[k]))
                for i in range(len(ys)) for k in range(len(ys)) if i != k)
    mean = float(a.sum())
    top = float(sum(np.max(np.linalg.norm(y, axis=1)) for y in ys)) ** 2
    return mean, max(four + cross - mean ** 2, 0.0), top


def check_point(runner, problem, layers, rounds: int, *, budgets=BUDGETS, lr: float = LR, s: float = SCALING,
                alpha: float = ALPHA, seed: int = 1) -> dict:
    """The spread test at one point (the rounds of ``alg1.round_unbiased``); see the module docstring.

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    problem : fslora_ref.problems.Problem
        A full-batch problem.
    layers : list of (ndarray, ndarray)
        The fixed point X, ``[(B: (m, r), A: (r, n))]``.
    rounds : int
        The number of rounds M run from X.
    budgets : sequence of int, optional
        The sketch sizes k_i per client.
    lr : float, optional
        The step size gamma.
    s : float, optional
        The LoRA scale.
    alpha : float, optional
        The false-alarm rate at this point.
    seed : int, optional
        The run seed of the implementation's rounds.

    Returns
    -------
    dict
        The statistics (empirical against exact, with their radii; the worst; the trace ratio and the
        smallest detectable relative change of the trace) and ``passed`` (bool).
    """
    config = FedConfig(rank=layers[0][0].shape[1], budgets=budgets, local_steps=1, lr=lr, rounds=rounds, seed=seed,
                       lora_scaling=s)
    mu, _, _, centred = exact_law(problem, layers, s, budgets, lr)
    N = len(budgets)
    ys = [c / N for c in centred]
    sigma = sum(y.T @ y / y.shape[0] for y in ys)
    dev = round_changes(runner, problem, layers, config, rounds) - mu
    D = mu.size
    level = alpha / (D + 3)
    tests = []
    eigvec = np.linalg.eigh(sigma)[1][:, -1]
    u = mu / np.linalg.norm(mu)
    views = [(f"coordinate {j}", np.eye(D)[j]) for j in range(D)] + [("mean direction", u), ("top eigenvector", eigvec)]
    for name, v in views:
        want, var, top = _square_law([y @ v for y in ys])
        got = float(np.mean((dev @ v) ** 2))
        eps = float(bernstein_radius(var, top, rounds, level))
        tests.append({"statistic": name, "empirical": got, "exact": want, "radius": eps,
                      "dev_over_radius": abs(got - want) / eps if eps > 0 else (0.0 if got == want else np.inf)})
    want, var, top = _trace_law(ys)
    got = float(np.mean(np.sum(dev * dev, axis=1)))
    eps = float(bernstein_radius(var, top, rounds, level))
    trace = {"statistic": "trace", "empirical": got, "exact": want, "radius": eps, "dev_over_radius": abs(got - want) / eps}
    tests.append(trace)
    empirical_cov = dev.T @ dev / rounds
    worst = max(tests, key=lambda t: t["dev_over_radius"])
    return {"problem": problem.name, "rounds": rounds, "D": D, "alpha": alpha, "budgets": list(budgets), "lr": lr,
            "trace_empirical_over_exact": got / want, "detectable_relative_change_of_trace": eps / want,
            "covariance_relative_frobenius_error": float(np.linalg.norm(empirical_cov - sigma) / np.linalg.norm(sigma)),
            "worst": worst, "trace": trace, "max_dev_over_radius": worst["dev_over_radius"],
            "passed": bool(all(t["dev_over_radius"] <= 1.0 for t in tests))}


def check_round_variance(runner, rounds: int = 1000, alpha: float = ALPHA) -> Result:
    """Check that the spread of the implementation's round change (H = 1, full batch) matches the exact covariance.

    The covariance assumes independent client sketches; checked at the points of
    ``alg1.round_unbiased`` (``alpha / 2`` each).

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    rounds : int, optional
        The rounds M per point.
    alpha : float, optional
        The family-wise false-alarm rate.

    Returns
    -------
    theory.result.Result
    """
    rows = [check_point(runner, p, random_points(p, 1, seed=7, rank=RANK)[0], rounds, alpha=alpha / 2)
            for p in problems()]
    ok = all(r["passed"] for r in rows)
    worst = max(rows, key=lambda r: r["max_dev_over_radius"])
    key = (f"{rounds} rounds x {len(rows)} problems: tr Cov empirical/exact "
           + ", ".join(f"{r['trace_empirical_over_exact']:.3f}" for r in rows)
           + f" (detects a change of {max(r['detectable_relative_change_of_trace'] for r in rows):.0%}); "
             f"worst {worst['worst']['statistic']}: |dev|/radius {worst['max_dev_over_radius']:.2f}")
    return Result(VERIFIED if ok else VIOLATED, key,
                  {"points": rows, "family_wise_alpha": alpha,
                   "test": "Bernstein on the M-round mean of <Delta - mu, v>^2 (each coordinate, the mean direction, "
                           "the top eigenvector of Sigma) and of ||Delta - mu||^2, exact mean, variance and range by "
                           "enumerating every client's sketches; Bonferroni over D + 3 statistics per point"})
