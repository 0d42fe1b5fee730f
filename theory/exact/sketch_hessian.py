"""The Hessian of f^S at many points at once, exactly, and its largest eigenvalue.

    hessian(problem, s, budgets, B, A) -> (P, d, d)      d = r (m + n), order [vec B; vec A]

Least squares: the Hessian of f~_i(X; S) is a polynomial of degree two in the sketch's diagonal c =
s diag(S), so E_S of it needs only E[c] and E[c c^T] (taken from the enumerated law). With K = X_i^T X_i / n_i,
D0 = K W0 - X_i^T Y_i / n_i, M1 = E[c], M2 = E[c c^T]:

    H_BB[(a,j),(b,l)] = K_ab M2_jl (A A^T)_jl
    H_AA[(j,p),(l,q)] = M2_jl (B^T K B)_jl delta_pq
    H_BA[(a,j),(l,p)] = M2_jl A_jp (K B)_al + delta_jl (M1_j D0_ap + sum_q M2_jq (K B)_aq A_qp)

Logistic (softmax cross-entropy): every index set is enumerated; per sample the logit Hessian is
Sigma = diag(p) - p p^T, so with u = x B diag(c), H = (1/n) sum_samples J^T Sigma J + the first-order
term delta_jl c_j G_ap, J the Jacobian of the logits in (B, A).

``theory.exact.constants.dense_hessian`` (assembled from exact Hessian-vector products, one point and one
sketch at a time) is the reference these are tested against.
"""
from __future__ import annotations

import numpy as np

from .moments import reference_law
from .sketch_batch import CHUNK, client_moments, unsketched_law


def _law_moments(law, r, k, s):
    diags, probs = law(r, k)
    c = s * diags
    return c, probs, probs @ c, np.einsum("q,qi,qj->ij", probs, c, c)


def _assemble(BB, AA, BA):
    """(P, m, r, m, r), (P, r, n, r, n), (P, m, r, r, n) -> symmetric (P, d, d)."""
    P, m, r = BB.shape[:3]
    n = AA.shape[2]
    dB, dA = m * r, r * n
    H = np.empty((P, dB + dA, dB + dA))
    H[:, :dB, :dB] = BB.reshape(P, dB, dB)
    H[:, dB:, dB:] = AA.reshape(P, dA, dA)
    H[:, :dB, dB:] = BA.reshape(P, dB, dA)
    H[:, dB:, :dB] = np.swapaxes(H[:, :dB, dB:], 1, 2)
    return H


def _least_squares(cm, W0, B, A, M1, M2):
    r, n = A.shape[1:]
    D0 = cm.K @ W0 - cm.C
    KB = np.matmul(cm.K, B)                                             # (P, m, r)
    AAt = np.matmul(A, np.swapaxes(A, 1, 2))                            # (P, r, r)
    BKB = np.matmul(np.swapaxes(B, 1, 2), KB)                           # (P, r, r)
    BB = np.einsum("ab,pjl->pajbl", cm.K, M2 * AAt)
    AA = np.einsum("pjl,tv->pjtlv", M2 * BKB, np.eye(n))
    BA = np.einsum("jl,pjq,pal->pajlq", M2, A, KB)
    jj = np.arange(r)
    BA[:, :, jj, jj, :] += M1[None, None, :, None] * D0[None, :, None, :] + np.einsum("jt,pat,ptq->pajq", M2, KB, A)
    return BB, AA, BA


def _softmax(cm, W0, B, A, coeffs, probs):
    P, m, r = B.shape
    n = A.shape[2]
    X = cm.X
    n_i = X.shape[0]
    rows, jj = np.arange(n_i), np.arange(r)
    BB = np.zeros((P, m, r, m, r))
    AA = np.zeros((P, r, n, r, n))
    BA = np.zeros((P, m, r, r, n))
    XX = np.einsum("sa,sb->sab", X, X).reshape(n_i, m * m)
    for c, q in zip(coeffs, probs):
        W = W0 + np.matmul(B * c, A)                                    # (P, m, n)
        Z = np.matmul(X, W)                                             # (P, n_i, n)
        E = np.exp(Z - Z.max(axis=2, keepdims=True))
        p = E / E.sum(axis=2, keepdims=True)
        Y = p.copy()
        Y[:, rows, cm.labels] -= 1.0
        G = np.matmul(X.T, Y) / n_i                                     # (P, m, n)
        Ac = c[None, :, None] * A                                       # (P, r, n)
        AcT = np.swapaxes(Ac, 1, 2)[:, None]                            # (P, 1, n, r)
        Ap = np.matmul(p, AcT[:, 0])                                    # (P, n_i, r): (c A) p_s
        ASigma = Ac[:, None] * p[:, :, None, :] - Ap[..., None] * p[:, :, None, :]   # (P, n_i, r, n): (c A) Sigma_s
        T = np.matmul(ASigma, AcT)                                      # (P, n_i, r, r): (c A) Sigma_s (c A)^T
        BB += q * (XX.T @ T.reshape(P, n_i, r * r)).reshape(P, m, m, r, r).transpose(0, 1, 3, 2, 4) / n_i
        u = np.matmul(X, B) * c                                         # (P, n_i, r): x B diag(c)
        Sig = p[..., :, None] * np.eye(n) - p[..., :, None] * p[..., None, :]    # (P, n_i, n, n)
        uu = (u[..., :, None] * u[..., None, :]).reshape(P, n_i, r * r)
        AA += q * np.matmul(np.swapaxes(uu, 1, 2), Sig.reshape(P, n_i, n * n)).reshape(P, r, r, n, n).transpose(
            0, 1, 3, 2, 4) / n_i
        xu = (X[None, :, :, None] * u[:, :, None, :]).reshape(P, n_i, m * r)          # x_sa u_sl
        cross = np.matmul(np.swapaxes(xu, 1, 2), ASigma.reshape(P, n_i, r * n)).reshape(P, m, r, r, n).transpose(
            0, 1, 3, 2, 4) / n_i
        cross[:, :, jj, jj, :] += c[None, None, :, None] * G[:, :, None, :]
        BA += q * cross
    return BB, AA, BA


def hessian(problem, s: float, budgets, B: np.ndarray, A: np.ndarray, *, law=reference_law, moments=None) -> np.ndarray:
    """The exact Hessian of f^S at P points, in ``[vec B; vec A]`` coordinates.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.
    B : ndarray, shape (P, m, r)
        The B factors of P points.
    A : ndarray, shape (P, r, n)
        The A factors of the same points.
    law : callable, optional
        The sketch law ``law(r, k) -> (diagonals, probabilities)``; default
        :func:`theory.exact.moments.reference_law`.
    moments : list of ClientMoments, optional
        Precomputed :func:`theory.exact.sketch_batch.client_moments`.

    Returns
    -------
    ndarray, shape (P, d, d)
        d = r (m + n).
    """
    moments = moments or client_moments(problem)
    W0 = problem.base_weights[0]
    N = len(moments)
    r = B.shape[2]
    total = None
    for i, cm in enumerate(moments):
        coeffs, probs, M1, M2 = _law_moments(law, r, budgets[i], s)
        parts = _least_squares(cm, W0, B, A, M1, M2) if cm.link == "squared" else _softmax(cm, W0, B, A, coeffs, probs)
        H = _assemble(*parts)
        total = H / N if total is None else total + H / N
    return total


def client_hessian_norm(problem, s: float, B: np.ndarray, A: np.ndarray, *, moments=None,
                        chunk: int = CHUNK // 4) -> np.ndarray:
    """``||Hessian f_i||_2`` of the unsketched f_i (the paper's Assumption 4.1) per point and client.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    s : float
        The LoRA scale.
    B : ndarray, shape (P, m, r)
        The B factors of P points.
    A : ndarray, shape (P, r, n)
        The A factors of the same points.
    moments : list of ClientMoments, optional
        Precomputed :func:`theory.exact.sketch_batch.client_moments`.
    chunk : int, optional
        Points per block (bounds memory).

    Returns
    -------
    ndarray, shape (P, N)
    """
    moments = moments or client_moments(problem)
    W0 = problem.base_weights[0]
    coeffs, probs, M1, M2 = _law_moments(unsketched_law, B.shape[2], None, s)
    out = np.empty((len(B), len(moments)))
    for lo in range(0, len(B), chunk):
        Bc, Ac = B[lo:lo + chunk], A[lo:lo + chunk]
        for i, cm in enumerate(moments):
            parts = (_least_squares(cm, W0, Bc, Ac, M1, M2) if cm.link == "squared"
                     else _softmax(cm, W0, Bc, Ac, coeffs, probs))
            eig = np.linalg.eigvalsh(_assemble(*parts))
            out[lo:lo + chunk, i] = np.maximum(np.abs(eig[:, 0]), np.abs(eig[:, -1]))
    return out


def lambda_max(problem, s: float, budgets, B: np.ndarray, A: np.ndarray, *, law=reference_law, moments=None,
               chunk: int = CHUNK // 4) -> np.ndarray:
    """The largest eigenvalue of the Hessian of f^S at each of P points (exact, from the dense Hessian).

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.
    B : ndarray, shape (P, m, r)
        The B factors of P points.
    A : ndarray, shape (P, r, n)
        The A factors of the same points.
    law : callable, optional
        The sketch law ``law(r, k) -> (diagonals, probabilities)``; default
        :func:`theory.exact.moments.reference_law`.
    moments : list of ClientMoments, optional
        Precomputed :func:`theory.exact.sketch_batch.client_moments`.
    chunk : int, optional
        Points per block (bounds memory).

    Returns
    -------
    ndarray, shape (P,)
    """
    moments = moments or client_moments(problem)
    out = np.empty(len(B))
    for lo in range(0, len(B), chunk):
        H = hessian(problem, s, budgets, B[lo:lo + chunk], A[lo:lo + chunk], law=law, moments=moments)
        out[lo:lo + chunk] = np.linalg.eigvalsh(H)[:, -1]
    return out
