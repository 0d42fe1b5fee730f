"""Algorithm 1's structural claims, run through the implementation under test (a round runner):

* ``check_sketch_fixed``: one sketch per client and round: with H = 4 local steps, the B columns and A
  rows that moved form one index set of exactly k (a single client, so the change is its own);
* ``check_forms_agree``: the reference's submatrix and full-size masked clients give identical iterates
  (only for ``Algorithm`` runners, which have both forms);
* ``check_fedavg``: with every k_i = r the round equals plain FedAvg of the LoRA factors, written from
  scratch in :mod:`theory.exact.fedavg` (not FedIT, which shares the server code with FSLoRA).
"""
from __future__ import annotations

import numpy as np

from fslora_ref.client import DivergenceError
from fslora_ref.config import FedConfig
from fslora_ref.conformance.protocol import MOVED, TOLERANCE
from fslora_ref.federation import run
from fslora_ref.problems import least_squares

from ..exact import bounds
from ..exact.constants import every_client, sketch_variance
from ..exact.fedavg import fedavg_round
from ..result import SKIPPED, VERIFIED, VIOLATED, Result, exact
from .objective import RANK, SCALING, random_points


def _dtype(runner):
    return np.dtype(getattr(runner, "dtype", np.float64))


def check_sketch_fixed(runner, steps: int = 4, trials: int = 3) -> Result:
    """Check that one sketch per client and round is used: the moved B columns and A rows coincide and number exactly k.

    One client (N = 1), generic points (A != 0), H = ``steps`` full-batch steps, k = 1..r-1.

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    steps : int, optional
        The local steps H.
    trials : int, optional
        The rounds per k.

    Returns
    -------
    theory.result.Result
    """
    problem = least_squares(n_clients=1, m=6, n=4, mean_size=20, seed=5)
    tol = MOVED[_dtype(runner)]
    bad, cases = [], 0
    for k in range(1, RANK):
        config = FedConfig(rank=RANK, budgets=(k,), local_steps=steps, lr=0.05, rounds=trials, seed=k,
                           lora_scaling=SCALING)
        for t, layers in enumerate(random_points(problem, trials, seed=5 + k)):
            cases += 1
            try:
                (B1, A1), = runner.run(problem, config, layers, t)
            except DivergenceError as exc:
                bad.append({"k": k, "round": t, "error": str(exc)})
                continue
            (B0, A0), = layers
            cols = np.flatnonzero(np.max(np.abs(B1 - B0), axis=0) > tol * np.max(np.abs(B0)))
            rows = np.flatnonzero(np.max(np.abs(A1 - A0), axis=1) > tol * np.max(np.abs(A0)))
            if not (np.array_equal(cols, rows) and cols.size == k):
                bad.append({"k": k, "round": t, "B_columns_moved": cols.tolist(), "A_rows_moved": rows.tolist()})
    ev = {"trials": cases, "local_steps": steps, "rank": RANK, "failures": bad}
    if bad:
        first = bad[0]
        what = first.get("error") or f"B columns {first['B_columns_moved']} and A rows {first['A_rows_moved']} moved"
        return Result(VIOLATED, f"{len(bad)} of {cases} rounds: k={first['k']}: {what}", ev)
    return Result(VERIFIED, f"{cases} rounds, H={steps}: exactly k columns of B and the same k rows of A moved", ev)


def check_forms_agree(runner, rounds: int = 3) -> Result:
    """Check that the submatrix and masked clients agree and upload exactly k_i (m + n) floats.

    Only for runners with both forms (an ``Algorithm`` runner of FSLoRA); both runs go through
    ``fslora_ref.federation.run``, so the uploads are the ones its history counts.

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    rounds : int, optional
        The rounds run.

    Returns
    -------
    theory.result.Result
        SKIPPED for a runner with a single client form.
    """
    if not getattr(runner, "has_forms", False):
        return Result(SKIPPED, "the implementation has a single client form (compare it with the reference: "
                               "fslora crosscheck)", {"implementation": runner.name})
    algorithm = runner.algorithm
    problem = least_squares(n_clients=3, m=6, n=4, mean_size=20, batch_size=5, seed=3)
    cfg = FedConfig(rank=RANK, budgets=(1, 2, 3), local_steps=3, lr=0.05, rounds=rounds, seed=7, lora_scaling=SCALING)
    states, uploads_ok = {}, True
    for form in ("submatrix", "masked"):
        c = cfg.replace(form=form)
        history = run(algorithm, problem, c, divergence_factor=None)   # the driver loop every command uses
        uploads_ok &= all(floats == c.budgets[i] * 10 for per_client in history.per_client_upload
                          for i, floats in enumerate(per_client))
        states[form] = history.final_state.layers
    diff = max(float(np.max(np.abs(x - y))) for a, b in zip(states["submatrix"], states["masked"]) for x, y in zip(a, b))
    res = exact({"submatrix vs masked iterates": diff}, scale=1.0)
    res.evidence["upload_floats_equal_k(m+n)"] = bool(uploads_ok)
    if not uploads_ok:
        res.status = VIOLATED
    return res


def check_fedavg(runner, rounds: int = 4) -> Result:
    """Check that with every k_i = r each round equals plain FedAvg (:func:`theory.exact.fedavg.fedavg_round`).

    The error is relative to the round's largest change, at the implementation's dtype tolerance; also
    checks sigma_s^2 = 0 and L-bar = L-tilde = L at k = r.

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    rounds : int, optional
        The rounds compared (each from FedAvg's previous iterate).

    Returns
    -------
    theory.result.Result
    """
    problem = least_squares(n_clients=3, m=6, n=4, mean_size=20, seed=3)
    config = FedConfig(rank=RANK, budgets=(RANK,) * 3, local_steps=3, lr=0.05, rounds=rounds, seed=3,
                       lora_scaling=SCALING)
    layers = random_points(problem, 1, seed=9)[0]
    tol = TOLERANCE[_dtype(runner)]
    worst = 0.0
    for t in range(rounds):
        want = fedavg_round(problem, layers, lr=config.lr, local_steps=config.local_steps, s=SCALING)
        try:
            got = runner.run(problem, config, layers, t)
        except DivergenceError as exc:
            return Result(VIOLATED, f"round {t}: {exc}", {"round": t})
        change = max(float(np.max(np.abs(w - x))) for pw, px in zip(want, layers) for w, x in zip(pw, px))
        err = max(float(np.max(np.abs(g - w))) for pg, pw in zip(got, want) for g, w in zip(pg, pw)) / change
        worst = max(worst, err)
        layers = want
    ss = sketch_variance(problem, every_client(problem, [layers]), SCALING, config.budgets).value
    gap = abs(bounds.L_bar(1.0, RANK, config.budgets) - 1.0) + abs(bounds.L_tilde(1.0, RANK, config.budgets) - 1.0)
    ev = {"max_relative_error": worst, "tolerance": tol, "rounds": rounds, "sigma_s2_at_k_eq_r": ss,
          "|L-bar/L - 1| + |L-tilde/L - 1|": gap, "oracle": "theory.exact.fedavg.fedavg_round (plain NumPy)"}
    ok = worst <= tol and ss <= 1e-20 and gap == 0.0
    return Result(VERIFIED if ok else VIOLATED, f"max relative error vs plain FedAvg {worst:.2e} (tolerance {tol:g})", ev)
