"""Certified lower bounds f* <= inf f^S for the a-priori form of the toolkit's bound.

Both single-layer families have convex losses in W, so by Jensen (E_S[B S A] = B A)

    f_i^S(X) = E_S f_i(W0 + s B S A) >= f_i(W0 + s B A),   hence   f^S(X) >= f(W0 + s B A) >= min_W f(W).

Least squares: min_W f is a linear solve (``theory.exact.constants.lower_bound``, exact).
Logistic (softmax cross-entropy): min_W f has no closed form; a *dual certificate* gives a bound that
holds for every W. By the Gibbs variational principle lse(z) = max_{a in simplex} <a, z> + H(a), so for
any per-sample a_s in the simplex with sum_s w_s x_s^T (a_s - e_{y_s}) = 0 (w_s = 1/(N n_i)),

    f(W) >= sum_s w_s H(a_s)   for every W.

a_s = softmax(x_s W~) at a numerical minimiser W~ is feasible up to the gradient residual R; the
correction a_s <- a_s - x_s S_x^{-1} R (I - 1 1^T / C), S_x = sum_s w_s x_s^T x_s, makes it exactly
feasible (rows still sum to one; they stay positive because R is ~1e-10). The duality gap at the
optimum is zero, so the certificate is tight to the solver's accuracy.
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from .constants import Constant, lower_bound


def _softmax_data(problem):
    X = np.concatenate([c.X for c in problem.clients])
    y = np.concatenate([np.asarray(c.targets) for c in problem.clients])
    w = np.concatenate([np.full(c.size, 1.0 / (problem.n_clients * c.size)) for c in problem.clients])
    return X, y, w


def _objective(flat, X, y, w, shape):
    Z = X @ flat.reshape(shape)
    zmax = Z.max(axis=1, keepdims=True)
    E = np.exp(Z - zmax)
    tot = E.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    value = float(w @ (np.log(tot[:, 0]) + zmax[:, 0] - Z[rows, y]))
    D = E / tot
    D[rows, y] -= 1.0
    return value, (X.T @ (w[:, None] * D)).ravel()


def softmax_dual_bound(problem, *, tol: float = 1e-13) -> tuple[float, float, float]:
    """A dual certificate of ``min_W f`` for a single-layer softmax cross-entropy problem.

    Minimises f with L-BFGS-B, takes the softmax probabilities at the minimiser as the dual point,
    corrects them to be exactly feasible and returns the entropy bound (see the module docstring).

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem with the cross-entropy link.
    tol : float, optional
        The solver's gradient tolerance.

    Returns
    -------
    tuple of float
        ``(bound, primal, min_alpha)``: the certified lower bound on ``min_W f``, the primal value at
        the numerical minimiser, and the smallest entry of the dual point (the bound is valid only if
        it is >= 0).
    """
    X, y, w = _softmax_data(problem)
    shape = problem.base_weights[0].shape
    res = minimize(_objective, np.zeros(int(np.prod(shape))), args=(X, y, w, shape), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": tol, "ftol": 0.0})
    W = res.x.reshape(shape)
    Z = X @ W
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    onehot = np.eye(shape[1])[y]
    R = X.T @ (w[:, None] * (P - onehot))                     # grad f(W~), (m, C); its rows sum to 0
    Sx = X.T @ (w[:, None] * X)
    C = shape[1]
    alpha = P - X @ np.linalg.solve(Sx, R) @ (np.eye(C) - np.ones((C, C)) / C)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.sum(np.where(alpha > 0, alpha * np.log(alpha), 0.0), axis=1)
    return float(w @ entropy), float(res.fun), float(alpha.min())


def certified_lower_bound(problem) -> Constant:
    """A certified lower bound ``f* <= inf f^S``.

    Least squares: the exact ``min_W f``; logistic: the dual certificate of
    :func:`softmax_dual_bound`; multi-layer problems, or a certificate with a negative dual entry: 0
    (the loss is non-negative).

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        The federated problem.

    Returns
    -------
    theory.exact.constants.Constant
        The bound, with ``method`` "exact", "certified" or "bounded" and a note saying why it holds.
    """
    if problem.n_layers != 1:
        return Constant(0.0, "bounded", "loss is non-negative (multi-layer: no certificate)")
    if problem.link == "squared":
        return lower_bound(problem)
    bound, primal, min_alpha = softmax_dual_bound(problem)
    if min_alpha < 0:
        return Constant(0.0, "bounded", f"dual correction left a negative entry ({min_alpha:.2e}); loss >= 0 used")
    return Constant(bound, "certified", f"dual certificate of min_W f (duality gap {primal - bound:.1e}); f^S >= f by Jensen")
