"""Theorem 4.4 evaluated on the same H = 1 full-batch runs as the toolkit's bound, for a side-by-side.

The paper's constants are measured as ``theory.experiment`` defines them, with the batched exact
routines: L = max ||Hessian f_i||_2 over clients at the visited server iterates and at the sketched
points [B S; A] (every S of every client; Proposition D.4's proof needs both), sigma_s^2 = max over
clients and iterates of Var_S grad f~_i, sigma_g^2 = 0 (full batch), (c_h, delta_h^2) from the grid
``theory.experiment.C_H_GRID`` keeping the smallest RHS that admits the step (as ``experiment.evaluate``).
To stay cheap the Hessian norms are taken at ``points`` evenly spaced iterates of each seed (always
including X^0 and X^T; the sketched points at a third of them): L is then a lower estimate of the
region's maximum, which favours the paper (larger gamma_max, smaller RHS) and is stated in the evidence.
"""
from __future__ import annotations

import numpy as np

from ..exact import bounds
from ..exact.constants import Constant, Heterogeneity
from ..exact.moments import reference_law
from ..exact.sketch_hessian import client_hessian_norm
from ..experiment import C_H_GRID


def paper_constants(problem, s: float, budgets, B, A, batch, *, points: int = 30) -> dict:
    """Theorem 4.4's constants measured on H = 1 full-batch runs (see the module docstring).

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.
    B : ndarray, shape (S, T+1, m, r)
        The B factors of the runs' iterates.
    A : ndarray, shape (S, T+1, r, n)
        The A factors of the iterates.
    batch : theory.exact.sketch_batch.SketchedBatch
        The exact sketched quantities at every iterate (S (T+1) points).
    points : int, optional
        The evenly spaced iterates per seed where Hessian norms are taken.

    Returns
    -------
    dict
        ``L``, ``L_at_X``, ``sigma_s2``, ``sigma_g2`` (:class:`theory.exact.constants.Constant`) and
        ``heterogeneity`` (:class:`theory.exact.constants.Heterogeneity`).
    """
    S, T1 = B.shape[:2]
    rows = np.unique(np.linspace(0, T1 - 1, min(points, T1)).astype(int))
    Bs, As = B[:, rows].reshape(-1, *B.shape[2:]), A[:, rows].reshape(-1, *A.shape[2:])
    L_X = float(np.max(client_hessian_norm(problem, s, Bs, As)))
    few = np.unique(np.linspace(0, T1 - 1, max(2, min(points, T1) // 3)).astype(int))
    Bs, As = B[:, few].reshape(-1, *B.shape[2:]), A[:, few].reshape(-1, *A.shape[2:])
    L_sk = 0.0
    r = B.shape[3]
    for k in sorted(set(budgets)):
        for d in reference_law(r, k)[0]:
            if np.all(d == 1.0):
                continue
            L_sk = max(L_sk, float(np.max(client_hessian_norm(problem, s, Bs * d, As))))
    het = Heterogeneity()
    het.a = list(batch.heterogeneity)
    het.g = list(batch.grad_sq)
    note = f"max over clients at {len(rows)} evenly spaced iterates of each of {S} seeds"
    return {"L": Constant(max(L_X, L_sk), "exact at points",
                          note + f" and at every sketched point [BS; A] of {len(few)} of them (a lower estimate)"),
            "L_at_X": Constant(L_X, "exact at points", note),
            "sigma_s2": Constant(float(np.max(batch.client_vars)), "exact at points", "all iterates, all sketches"),
            "sigma_g2": Constant(0.0, "exact", "full-batch clients"), "heterogeneity": het}


def paper_rhs(consts: dict, *, gap: float, gamma: float, T: int, r: int, budgets, H: int = 1) -> dict:
    """Theorem 4.4's RHS and terms at (gamma, T), with c_h chosen from the grid as ``experiment.evaluate`` does.

    Parameters
    ----------
    consts : dict
        :func:`paper_constants`' result.
    gap : float
        ``f^S(X^0) - f*``.
    gamma : float
        The step size.
    T : int
        The number of rounds.
    r : int
        The rank.
    budgets : sequence of int
        The sketch sizes k_i.
    H : int, optional
        The local steps.

    Returns
    -------
    dict
        :func:`theory.exact.bounds.theorem_rhs`' terms plus ``c_h``, ``gamma_max``, ``within``
        (gamma <= gamma_max) and ``delta_h2``.
    """
    L, sg, ss, het = consts["L"].value, consts["sigma_g2"].value, consts["sigma_s2"].value, consts["heterogeneity"]
    best = None
    for c_h in C_H_GRID:
        gmax = bounds.step_size_limit(L, r, budgets, H, c_h)
        rhs = bounds.theorem_rhs(gap=gap, gamma=gamma, T=T, H=H, L=L, r=r, budgets=budgets, sigma_g2=sg,
                                 sigma_s2=ss, sigma_h2=het.delta2(c_h))
        key = (gamma > gmax, rhs["rhs"] if gamma <= gmax else -gmax)
        if best is None or key < best[0]:
            best = (key, dict(rhs, c_h=c_h, gamma_max=gmax, within=gamma <= gmax, delta_h2=het.delta2(c_h)))
    return best[1]


def paper_step_limit(consts: dict, r: int, budgets, H: int = 1) -> float:
    """The largest gamma_max of Theorem 4.4 over the c_h grid (each (c_h, delta_h^2(c_h)) pair is valid).

    Parameters
    ----------
    consts : dict
        :func:`paper_constants`' result.
    r : int
        The rank.
    budgets : sequence of int
        The sketch sizes k_i.
    H : int, optional
        The local steps.

    Returns
    -------
    float
    """
    return max(bounds.step_size_limit(consts["L"].value, r, budgets, H, c_h) for c_h in C_H_GRID)
