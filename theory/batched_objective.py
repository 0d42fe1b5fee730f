"""f_i, f_i^S and their gradients at a whole stack of points at once (single-layer problems).

The convergence claims evaluate ||grad f^S(X^t)||^2 at every iterate of runs thousands of rounds
long; a per-point Python loop would dominate their cost. Same math as
:mod:`theory.sketched_objective` (tests hold the two against each other to rounding):

* least squares, f_i(W) = (1/2 n_i)||X_i W - Y_i||^2 with C_i = X_i^T X_i / n_i: f_i^S = f_i + the
  closed-form rank-dropout penalty (spec section 2), so grad f_i^S needs no enumeration;
* softmax cross-entropy: E_S over every C(r, k_i) index set, enumerated.

Shapes: Bs (P, m, r), As (P, r, n) for P points; results per client as (P, N, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fslora_ref.sketch import sketch_moments

from .sketched_objective import _choices

CHUNK = 512   # points per vectorised block (bounds the softmax enumeration's memory)


@dataclass
class PointStats:
    """Per point t: ||grad f^S||^2, ||grad f||^2 (both w.r.t. [B; A]), f^S, and
    a_t = max_i ||grad f_i^S - grad f^S||^2 (Assumption 4.3's left-hand side)."""

    grad_sq_sketched: np.ndarray     # (P,)
    grad_sq_plain: np.ndarray        # (P,)
    value_sketched: np.ndarray       # (P,)
    heterogeneity: np.ndarray        # (P,)


def _single_layer(problem):
    if problem.n_layers != 1:
        raise ValueError(f"batched objectives need a single-layer problem, got {problem.n_layers} layers")


def client_grads(problem, client: int, Bs, As, s: float, k: int | None):
    """(values (P,), dB (P, m, r), dA (P, r, n)) of f_i^S (k given) or f_i (k None) at every point."""
    _single_layer(problem)
    data = problem.clients[client]
    W0 = problem.base_weights[0]
    r = Bs.shape[2]
    if problem.link == "squared":
        return _least_squares(data.X, data.targets, W0, Bs, As, s, 0.0 if k is None else sketch_moments(r, k)["c_k"])
    diags = np.ones((1, r)) if k is None else np.array([d for (d,) in _choices((r,), (int(k),))])
    return _softmax(data.X, data.targets, W0, Bs, As, s, diags)


def _least_squares(X, Y, W0, Bs, As, s, c_k):
    n_i = X.shape[0]
    C = X.T @ X / n_i
    D = X.T @ Y / n_i
    W = W0 + s * Bs @ As                                          # (P, m, n)
    CW = C @ W
    value = 0.5 * np.einsum("pmn,pmn->p", W, CW) - np.einsum("pmn,mn->p", W, D) + 0.5 * np.sum(Y * Y) / n_i
    G = CW - D
    dB = s * G @ np.swapaxes(As, 1, 2)
    dA = s * np.swapaxes(Bs, 1, 2) @ G
    if c_k > 0.0:
        r = Bs.shape[2]
        c = s * s * c_k
        CB = C @ Bs                                               # (P, m, r)
        gram = np.swapaxes(Bs, 1, 2) @ CB                         # (P, r, r) = B^T C B
        a2 = np.sum(As * As, axis=2)                              # (P, r) = ||a_j||^2
        bcb = np.einsum("pjj->pj", gram)                          # (P, r) = b_j^T C b_j
        AAt = As @ np.swapaxes(As, 1, 2)
        value = value + 0.5 * c * (r * np.sum(bcb * a2, axis=1) - np.einsum("pjl,pjl->p", gram, AAt))
        dB = dB + c * (r * CB * a2[:, None, :] - CB @ AAt)
        dA = dA + c * (r * bcb[:, :, None] * As - gram @ As)
    return value, dB, dA


def _softmax(X, labels, W0, Bs, As, s, diags):
    """E over the rows of ``diags`` (uniform) of the cross-entropy at W0 + s B diag(d) A and its gradients."""
    n_i = X.shape[0]
    coeff = s * diags                                             # (K, r)
    BS = Bs[:, None, :, :] * coeff[None, :, None, :]              # (P, K, m, r)
    W = W0 + BS @ As[:, None, :, :]                               # (P, K, m, n)
    Z = X @ W                                                     # (P, K, n_i, c)
    Z = Z - Z.max(axis=-1, keepdims=True)
    logp = Z - np.log(np.exp(Z).sum(axis=-1, keepdims=True))
    rows = np.arange(n_i)
    value = -np.mean(logp[..., rows, labels], axis=-1).mean(axis=1)
    Pm = np.exp(logp)
    Pm[..., rows, labels] -= 1.0
    G = X.T @ Pm / n_i                                            # (P, K, m, c)
    dB = np.mean((G @ np.swapaxes(As, 1, 2)[:, None]) * coeff[None, :, None, :], axis=1)
    dA = np.mean(np.swapaxes(BS, 2, 3) @ G, axis=1)              # (s B diag(d))^T G
    return value, dB, dA


def point_stats(problem, Bs, As, s: float, budgets) -> PointStats:
    """Every statistic the convergence claims read, at every point (chunked)."""
    _single_layer(problem)
    out = []
    for start in range(0, Bs.shape[0], CHUNK):
        out.append(_chunk_stats(problem, Bs[start:start + CHUNK], As[start:start + CHUNK], s, budgets))
    return PointStats(*(np.concatenate([getattr(o, f) for o in out]) for f in
                        ("grad_sq_sketched", "grad_sq_plain", "value_sketched", "heterogeneity")))


def _chunk_stats(problem, Bs, As, s, budgets) -> PointStats:
    N = problem.n_clients
    sk = [client_grads(problem, i, Bs, As, s, budgets[i]) for i in range(N)]
    pl = [client_grads(problem, i, Bs, As, s, None) for i in range(N)]
    mean_B = sum(g[1] for g in sk) / N
    mean_A = sum(g[2] for g in sk) / N
    het = np.max([np.sum((g[1] - mean_B) ** 2, axis=(1, 2)) + np.sum((g[2] - mean_A) ** 2, axis=(1, 2)) for g in sk],
                 axis=0)
    plain_B = sum(g[1] for g in pl) / N
    plain_A = sum(g[2] for g in pl) / N
    return PointStats(np.sum(mean_B ** 2, axis=(1, 2)) + np.sum(mean_A ** 2, axis=(1, 2)),
                      np.sum(plain_B ** 2, axis=(1, 2)) + np.sum(plain_A ** 2, axis=(1, 2)),
                      sum(g[0] for g in sk) / N, het)
