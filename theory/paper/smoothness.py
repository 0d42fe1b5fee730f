"""Proposition D.4 checked on concrete problems: measured smoothness of the sketched functions
against the claimed multiple of a smoothness constant L measured on every point the claim
involves (X itself and every sketched point [B S; A]).

    f~_i(.; S)  is  L r^2/k_i^2 - smooth       (instance)
    f_i^S       is  L r/k_i     - smooth       (client)
    f^S         is  L-bar       - smooth       (global)

Hessians are exact (theory.exact.constants.dense_hessian); Hessians of f_i^S are exact averages
over the sketch law. "Smooth at X" means the Hessian's spectral norm at X.
"""
from __future__ import annotations

import functools

import numpy as np

from fslora_ref.problems import least_squares, logistic

from ..exact import bounds
from ..exact.constants import dense_hessian, hessian_norm
from ..exact.moments import reference_law
from ..experiment import Setting
from ..implementations import AlgorithmRunner, trajectory
from ..result import VERIFIED, VIOLATED, Result
from .objective import SCALING, random_points

RANK = 4
TOL = 1e-9


def cases(points: int = 3, run_rounds: int = 10):
    """The points Proposition D.4 is checked at.

    Random points of two small problems, and the iterates X^0, X^{T/2}, X^T of one reference run on
    each of the Theorem 4.4 grid's base problems.

    Parameters
    ----------
    points : int, optional
        The random points per small problem.
    run_rounds : int, optional
        The rounds T of each run.

    Returns
    -------
    list of tuple
        ``[(label, problem, [X], s)]``, each X ``[(B: (m, r), A: (r, n))]`` and s the LoRA scale.
    """
    out = [(f"{p.name} random", p, random_points(p, points, seed=11), SCALING)
           for p in (least_squares(n_clients=2, m=6, n=4, mean_size=20, seed=5),
                     logistic(n_clients=2, m=6, n_classes=3, mean_size=20, seed=5))]
    for setting in (Setting("ls-base", rounds=run_rounds, local_steps=2, batch_size=8),
                    Setting("lg-base", family="logistic", dims=(8, 4), rounds=run_rounds, local_steps=2, batch_size=8)):
        problem, config = setting.problem(), setting.config(0.05, seed=1)
        server = trajectory(AlgorithmRunner(), problem, config, setting.init_layers())
        out.append((f"{setting.name} run", problem, server[::run_rounds // 2], config.lora_scaling))
    return out


def _norm(H):
    return float(np.max(np.abs(np.linalg.eigvalsh(H))))


@functools.lru_cache(maxsize=8)   # the three statements share one measurement
def measure(law=reference_law, points: int = 3, l_bar_fn=bounds.L_bar) -> dict:
    """The worst measured / claimed smoothness ratio of each statement of Proposition D.4 (cached).

    Over the problems and points of :func:`cases`, every client and k = 1..r-1 (k = r is equality by
    construction).

    Parameters
    ----------
    law : callable, optional
        The sketch law.
    points : int, optional
        The random points per small problem.
    l_bar_fn : callable, optional
        The claimed global constant, signature of :func:`theory.exact.bounds.L_bar`.

    Returns
    -------
    dict
        ``{"instance" | "client" | "global": (worst ratio, where)}``.
    """
    worst = {"instance": (0.0, None), "client": (0.0, None), "global": (0.0, None)}

    def note(which, ratio, where):
        if ratio > worst[which][0]:
            worst[which] = (ratio, where)

    for label, problem, xs, s in cases(points):
        for p, layers in enumerate(xs):
            (B, A), = layers
            ones = s * np.ones(RANK)
            for k in range(1, RANK):   # k = r is equality by construction (S = I)
                diags, probs = law(RANK, k)
                H_global, L_all = 0.0, 0.0
                for i in range(problem.n_clients):
                    L_X = hessian_norm(problem, i, B, A, ones)[0]
                    H_client, L_client = 0.0, L_X
                    for d, q in zip(diags, probs):
                        H_inst = dense_hessian(problem, i, B, A, s * d)
                        L_S = max(L_X, hessian_norm(problem, i, B * d, A, ones)[0])   # f_i at [B S; A]
                        note("instance", _norm(H_inst) / ((RANK / k) ** 2 * L_S),
                             f"{label} point{p} client{i} k={k} S={np.flatnonzero(d).tolist()}")
                        H_client = H_client + q * H_inst
                        L_client = max(L_client, L_S)
                    note("client", _norm(H_client) / (RANK / k * L_client), f"{label} point{p} client{i} k={k}")
                    H_global = H_global + H_client / problem.n_clients
                    L_all = max(L_all, L_client)
                claimed = l_bar_fn(L_all, RANK, [k] * problem.n_clients)
                note("global", _norm(H_global) / claimed, f"{label} point{p} k={k}")
    return worst


def check(which: str, law=reference_law, l_bar_fn=bounds.L_bar) -> Result:
    """One statement of Proposition D.4: verified if the measured smoothness is at most the claimed one.

    Parameters
    ----------
    which : {"instance", "client", "global"}
        The statement: ``f~_i(.; S)`` is ``L r^2/k_i^2``-smooth, ``f_i^S`` is ``L r/k_i``-smooth, or
        ``f^S`` is L-bar-smooth.
    law : callable, optional
        The sketch law (a broken one can be held to the check).
    l_bar_fn : callable, optional
        The claimed global constant, signature of :func:`theory.exact.bounds.L_bar`.

    Returns
    -------
    theory.result.Result
    """
    ratio, where = measure(law, l_bar_fn=l_bar_fn)[which]
    status = VERIFIED if ratio <= 1.0 + TOL else VIOLATED
    return Result(status, f"max measured/claimed {ratio:.3f}",
                  {"max_measured_over_claimed": ratio, "worst_case": where,
                   "points": f"3 random points of 2 small problems (least squares, logistic) and 3 iterates of a run on "
                             f"each grid base problem; every client; k=1..{RANK - 1} (r={RANK})",
                   "L": "max Hessian norm of f_i over X and every sketched point [BS; A] involved"})
