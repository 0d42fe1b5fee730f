"""Round unbiasedness, run through the implementation under test (Algorithm 1 with H = 1):

    E[X^{t+1} - X^t] = -gamma grad f^S(X^t)        (full batch; E over the implementation's own sketches)

At a fixed generic point X (A != 0), the implementation runs M rounds from X (round indices
0..M-1, so its draws are independent); the mean change is compared with mu = -gamma grad f^S(X).

Test (rigorous at a fixed seed, no normal approximation): under a correct implementation the round
change is Delta = (1/N) sum_i delta_i(S_i) with delta_i(S) = -gamma grad f~_i(X; S) (Lemma 3.2) and
independent uniform S_i, so the variance sigma_j^2 and the range R_j of every coordinate of Delta are
known exactly by enumerating every sketch. Bernstein's inequality then bounds the deviation of an
M-round mean: P(|mean_j - mu_j| >= eps_j) <= 2 exp(-M eps_j^2 / (2 sigma_j^2 + 2 R_j eps_j / 3)).
Every coordinate, plus the projection on u = mu/||mu|| (the direction in which a wrong scale or a
wrong average shows), is tested at level alpha/(D+1): family-wise false-alarm rate <= alpha.
"""
from __future__ import annotations

from math import log

import numpy as np

from fslora_ref.config import FedConfig
from fslora_ref.conformance.protocol import TOLERANCE
from fslora_ref.problems import least_squares, logistic

from ..exact.sketched_objective import all_sketch_choices, instance_grad, sketched_grad
from ..result import VERIFIED, VIOLATED, Result
from .objective import SCALING, random_points
from .round_samples import round_changes

ALPHA = 1e-3
RANK = 4
BUDGETS = (1, 2, 3, 4)   # every k from 1 to r, so k = r clients and k = 1 clients both count
LR = 0.05


def problems():
    """Two small full-batch problems with N = 4 clients.

    Returns
    -------
    list of fslora_ref.problems.Problem
        ``[least squares, logistic]``.
    """
    return [least_squares(n_clients=4, m=6, n=4, mean_size=20, seed=3),
            logistic(n_clients=4, m=6, n_classes=3, mean_size=20, seed=3)]


def _flat(layers) -> np.ndarray:
    return np.concatenate([np.concatenate([B.ravel(), A.ravel()]) for B, A in layers])


def exact_law(problem, layers, s: float, budgets, lr: float):
    """The exact law of one H = 1 round from ``layers``, by enumerating every sketch of every client.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A full-batch problem.
    layers : list of (ndarray, ndarray)
        The start point ``[(B: (m, r), A: (r, n))]``.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.
    lr : float
        The step size gamma.

    Returns
    -------
    mu : ndarray, shape (D,)
        The expected change ``-gamma grad f^S``.
    var : ndarray, shape (D,)
        The per-coordinate variance of the change Delta.
    rng : ndarray, shape (D,)
        A bound on ``|Delta - mu|`` per coordinate.
    centred : list of ndarray
        Per client, shape (C(r, k_i), D): the values ``delta_i(S) - E delta_i``.
    """
    N = problem.n_clients
    mu, var, rng, centred = 0.0, 0.0, 0.0, []
    for i, k in enumerate(budgets):
        deltas = np.array([-lr * _flat(instance_grad(problem, i, layers, s, d)[1])
                           for d in all_sketch_choices(layers, [k] * problem.n_layers)])
        mean = deltas.mean(axis=0)
        c = deltas - mean
        mu, var, rng = mu + mean / N, var + np.mean(c * c, axis=0) / N ** 2, rng + np.max(np.abs(c), axis=0) / N
        centred.append(c)
    return mu, var, rng, centred


def bernstein_radius(var, rng, n: int, level: float):
    """The deviation eps with ``2 exp(-n eps^2 / (2 var + 2 rng eps / 3)) = level`` (Bernstein), elementwise.

    Parameters
    ----------
    var : float or ndarray
        The variance of one sample.
    rng : float or ndarray
        A bound on ``|sample - mean|``.
    n : int
        The number of samples averaged.
    level : float
        The probability of a larger deviation of the mean.

    Returns
    -------
    float or ndarray
        eps, shaped like ``var``.

    Examples
    --------
    >>> from math import exp
    >>> from theory.paper.unbiased import bernstein_radius
    >>> eps = bernstein_radius(1.0, 2.0, 100, 1e-3)
    >>> round(2 * exp(-100 * eps ** 2 / (2 * 1.0 + 2 * 2.0 * eps / 3)), 6)
    0.001
    """
    l = log(2.0 / level)
    return (rng * l / 3.0 + np.sqrt((rng * l / 3.0) ** 2 + 2.0 * n * var * l)) / n


def check_point(runner, problem, layers, rounds: int, *, budgets=BUDGETS, lr: float = LR, s: float = SCALING,
                alpha: float = ALPHA, seed: int = 1) -> dict:
    """The unbiasedness test at one point (see the module docstring).

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
        The false-alarm rate of the test at this point.
    seed : int, optional
        The run seed of the implementation's rounds.

    Returns
    -------
    dict
        The statistics (deviations over their Bernstein radii per coordinate and along -grad f^S, the
        worst coordinate, the detectable relative bias, ...) and ``passed`` (bool).
    """
    config = FedConfig(rank=layers[0][0].shape[1], budgets=budgets, local_steps=1, lr=lr, rounds=rounds, seed=seed,
                       lora_scaling=s)
    mu, var, rng, centred = exact_law(problem, layers, s, budgets, lr)
    # the law's mean is -gamma grad f^S(X) exactly (Lemma 3.2): a cross-check of the enumeration itself
    grad = sum(_flat(sketched_grad(problem, i, layers, s, [k] * problem.n_layers)) for i, k in enumerate(budgets))
    target = -lr * grad / len(budgets)
    u = mu / np.linalg.norm(mu)
    var_u = sum(np.mean((c @ u) ** 2) for c in centred) / len(budgets) ** 2
    rng_u = sum(np.max(np.abs(c @ u)) for c in centred) / len(budgets)
    mean = round_changes(runner, problem, layers, config, rounds).mean(axis=0)
    D = mu.size
    level = alpha / (D + 1)
    scale = float(np.max(np.abs(mu)))
    floor = TOLERANCE[np.dtype(getattr(runner, "dtype", np.float64))] * scale   # rounding of the implementation
    eps = bernstein_radius(var, rng, rounds, level) + floor
    eps_u = float(bernstein_radius(var_u, rng_u, rounds, level)) + floor
    dev = np.abs(mean - mu)
    dev_u = abs(float((mean - mu) @ u))
    ratios = dev / eps
    worst = int(np.argmax(ratios))
    return {"problem": problem.name, "rounds": rounds, "D": D, "alpha": alpha, "budgets": list(budgets), "lr": lr,
            "law_mean_vs_grad_fS": float(np.max(np.abs(mu - target))),
            "max_dev_over_radius": float(ratios[worst]), "worst_coordinate": worst,
            "worst_dev": float(dev[worst]), "worst_radius": float(eps[worst]),
            "projection_dev_over_radius": dev_u / eps_u,
            "step_along_grad_over_reference": float(mean @ u / np.linalg.norm(mu)),
            "detectable_relative_bias_along_grad": eps_u / float(np.linalg.norm(mu)),
            "passed": bool(np.all(dev <= eps) and dev_u <= eps_u)}


def check_round_unbiased(runner, rounds: int = 400, alpha: float = ALPHA) -> Result:
    """Check that the implementation's mean round change (H = 1, full batch) equals ``-gamma grad f^S(X)``.

    Within the Bernstein radius, at a generic point of a least-squares and a logistic problem
    (``alpha / 2`` each).

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
    worst = max(rows, key=lambda r: max(r["max_dev_over_radius"], r["projection_dev_over_radius"]))
    key = (f"{rounds} rounds x {len(rows)} problems: max |mean - mu| / radius "
           f"{max(worst['max_dev_over_radius'], worst['projection_dev_over_radius']):.2f}; step along -grad f^S "
           f"{worst['step_along_grad_over_reference']:.3f} x expected")
    return Result(VERIFIED if ok else VIOLATED, key,
                  {"points": rows, "family_wise_alpha": alpha, "test": "Bernstein per coordinate and along "
                   "-grad f^S, exact variance and range by enumerating every sketch, Bonferroni over D+1 statistics"})
