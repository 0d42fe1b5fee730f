"""f^S, grad f^S and the sketch variance at many points at once, exactly (every index set enumerated).

The theory's checks need, at every iterate of every seed of long runs,

    f^S(X) = (1/N) sum_i E_S f~_i(X; S),        grad f^S(X) = (1/N) sum_i E_S grad f~_i(X; S),
    V(X)   = (1/N^2) sum_i Var_S grad f~_i(X; S)    (the variance of the H = 1 round direction),

and the per-client grad f_i^S, for single-layer least-squares and logistic problems. ``evaluate``
computes them all (the H = 1 bound, ``theory.ours.bound``, reads every one); ``point_stats`` is what
the convergence claims of ``fslora verify`` read: ||grad f^S||^2, f^S, the heterogeneity
max_i ||grad f_i^S - grad f^S||^2 and ||grad f||^2 (``evaluate`` under ``unsketched_law``, S = I).

The pointwise reference is ``theory.exact.sketched_objective`` (one point, one sketch at a time); this
module evaluates the same expectations for a batch of P points in a few array operations,
enumerating all C(r, k_i) index sets of the sketch law (``theory.exact.moments.reference_law`` by
default, or any law a test hands in).

Conventions: points are stacked factors B: (P, m, r), A: (P, r, n); a flattened point or
gradient is [vec B; vec A] (row-major), d = r (m + n) entries, the order ``constants.dense_hessian`` uses.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .moments import reference_law

CHUNK = 2048          # points per block of the Hessians (``theory.exact.sketch_hessian``)
BLOCK_ELEMENTS = 2 ** 20   # ``evaluate``'s largest temporary per block, (points, C(r,k), m, n), its gradients or
                           # (points, C(r,k), n_i, n) logits: 8 MB, so memory stays flat whatever P


@dataclass(frozen=True)
class ClientMoments:
    """What one client's single-layer loss needs, precomputed once.

    Parameters
    ----------
    link : {"squared", "softmax"}
        The loss.
    K : ndarray, shape (m, m), optional
        Squared: ``X^T X / n_i``.
    C : ndarray, shape (m, n), optional
        Squared: ``X^T Y / n_i``.
    y2 : float, optional
        Squared: ``||Y||^2 / (2 n_i)``.
    X : ndarray, shape (n_i, m), optional
        Softmax: the inputs.
    labels : ndarray of int, shape (n_i,), optional
        Softmax: the class labels.
    """

    link: str
    K: np.ndarray | None = None
    C: np.ndarray | None = None
    y2: float = 0.0
    X: np.ndarray | None = None
    labels: np.ndarray | None = None

    @property
    def curvature(self) -> float:
        """||X^T X / n_i||_2: the largest eigenvalue of the client's input Gram matrix."""
        K = self.K if self.K is not None else self.X.T @ self.X / self.X.shape[0]
        return float(np.linalg.eigvalsh(K)[-1])


def client_moments(problem) -> list:
    """The :class:`ClientMoments` of every client of a single-layer problem.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.

    Returns
    -------
    list of ClientMoments
        One per client, in client order.

    Raises
    ------
    ValueError
        If the problem has more than one layer.
    """
    if problem.n_layers != 1:
        raise ValueError(f"the batched sketched objective needs a single-layer problem, got {problem.n_layers} layers")
    out = []
    for c in problem.clients:
        n_i = c.X.shape[0]
        if problem.link == "squared":
            out.append(ClientMoments("squared", K=c.X.T @ c.X / n_i, C=c.X.T @ c.targets / n_i,
                                     y2=float(np.sum(c.targets ** 2)) / (2 * n_i)))
        else:
            out.append(ClientMoments("softmax", X=c.X, labels=np.asarray(c.targets)))
    return out


def loss_and_weight_grad(cm: ClientMoments, W: np.ndarray):
    """One client's loss and its gradient over W at a stack of weights.

    Parameters
    ----------
    cm : ClientMoments
        The client's precomputed data.
    W : ndarray, shape (..., m, n)
        The full weights ``W0 + s B S A``.

    Returns
    -------
    loss : ndarray, shape (...)
    grad : ndarray, shape (..., m, n)
    """
    if cm.link == "squared":
        KW = np.matmul(cm.K, W)
        loss = 0.5 * np.sum(W * KW, axis=(-2, -1)) - np.sum(W * cm.C, axis=(-2, -1)) + cm.y2
        return loss, KW - cm.C
    Z = np.matmul(cm.X, W)                                          # (..., n_i, n)
    zmax = Z.max(axis=-1, keepdims=True)
    E = np.exp(Z - zmax)
    tot = E.sum(axis=-1, keepdims=True)
    n_i = cm.X.shape[0]
    rows = np.arange(n_i)
    loss = np.mean(np.log(tot[..., 0]) + zmax[..., 0] - Z[..., rows, cm.labels], axis=-1)
    D = E / tot
    D[..., rows, cm.labels] -= 1.0
    return loss, np.matmul(cm.X.T, D) / n_i


@dataclass
class SketchedBatch:
    """The exact sketched quantities at P points (every array indexed by point first).

    Parameters
    ----------
    value : ndarray, shape (P,)
        f^S.
    grad : ndarray, shape (P, d)
        grad f^S, flattened ``[vec B; vec A]``.
    variance : ndarray, shape (P,)
        ``V = (1/N^2) sum_i Var_S grad f~_i``, the variance of the H = 1 round direction.
    client_grads : ndarray, shape (P, N, d)
        grad f_i^S.
    client_vars : ndarray, shape (P, N)
        ``Var_S grad f~_i`` (the paper's sigma_s^2 is its max).
    """

    value: np.ndarray          # (P,)    f^S
    grad: np.ndarray           # (P, d)  grad f^S, flattened [vec B; vec A]
    variance: np.ndarray       # (P,)    V = (1/N^2) sum_i Var_S grad f~_i
    client_grads: np.ndarray   # (P, N, d) grad f_i^S
    client_vars: np.ndarray    # (P, N)  Var_S grad f~_i  (the paper's sigma_s^2 is its max)

    @property
    def grad_sq(self) -> np.ndarray:
        """||grad f^S||^2: (P,)."""
        return np.sum(self.grad ** 2, axis=1)

    @property
    def heterogeneity(self) -> np.ndarray:
        """max_i ||grad f_i^S - grad f^S||^2 (Assumption 4.3's left-hand side): (P,)."""
        return np.max(np.sum((self.client_grads - self.grad[:, None]) ** 2, axis=2), axis=1)


def unsketched_law(r: int, k: int):
    """The law of S = I whatever k, so that ``f~_i(X; I) = f_i``: the unsketched objective through the sketched code.

    Parameters
    ----------
    r : int
        The rank.
    k : int
        Ignored (the signature of a sketch law).

    Returns
    -------
    diagonals : ndarray, shape (1, r)
        Ones.
    probabilities : ndarray, shape (1,)
        ``[1.0]``.
    """
    return np.ones((1, r)), np.ones(1)


def flatten(B: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Flatten points to ``[vec B; vec A]`` (row-major), the order of the Hessians.

    Parameters
    ----------
    B : ndarray, shape (P, m, r)
        The B factors of P points.
    A : ndarray, shape (P, r, n)
        The A factors of the same points.

    Returns
    -------
    ndarray, shape (P, r (m + n))

    Examples
    --------
    >>> import numpy as np
    >>> from theory.exact.sketch_batch import flatten, unflatten
    >>> B, A = np.arange(6.0).reshape(1, 3, 2), np.arange(8.0).reshape(1, 2, 4)
    >>> x = flatten(B, A)
    >>> x.shape
    (1, 14)
    >>> all(np.array_equal(u, v) for u, v in zip(unflatten(x, 3, 2, 4), (B, A)))
    True
    """
    return np.concatenate([B.reshape(len(B), -1), A.reshape(len(A), -1)], axis=1)


def unflatten(x: np.ndarray, m: int, r: int, n: int):
    """The inverse of :func:`flatten`.

    Parameters
    ----------
    x : ndarray, shape (P, r (m + n))
        Flattened points or gradients.
    m : int
        Rows of B.
    r : int
        The rank.
    n : int
        Columns of A.

    Returns
    -------
    B : ndarray, shape (P, m, r)
    A : ndarray, shape (P, r, n)
    """
    return x[:, :m * r].reshape(-1, m, r), x[:, m * r:].reshape(-1, r, n)


def evaluate(problem, s: float, budgets, B: np.ndarray, A: np.ndarray, *, law=reference_law,
             moments=None) -> SketchedBatch:
    """f^S, grad f^S, V and the per-client pieces at P points, exactly.

    Every index set of every client's law is enumerated; ``grad f~_i(X; S) = (s G A^T S, s S B^T G)``
    with ``G = grad_W loss_i(W0 + s B S A)`` (Lemma 3.2). Exact up to float64 rounding; memory stays
    flat in P (blocks of ``BLOCK_ELEMENTS``).

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
        :func:`theory.exact.moments.reference_law` (:func:`unsketched_law` gives f itself).
    moments : list of ClientMoments, optional
        Precomputed :func:`client_moments`.

    Returns
    -------
    SketchedBatch
    """
    moments = moments or client_moments(problem)
    W0 = problem.base_weights[0]
    P, m, r = B.shape
    n = A.shape[2]
    N = len(moments)
    laws = [law(r, k) for k in budgets]
    width = max([m * n, r * (m + n)] + [cm.X.shape[0] * n for cm in moments if cm.X is not None])
    chunk = max(1, BLOCK_ELEMENTS // (width * max(len(probs) for _, probs in laws)))
    value = np.zeros(P)
    cgrads = np.zeros((P, N, r * (m + n)))
    cvars = np.zeros((P, N))
    for lo in range(0, P, chunk):
        Bc, Ac = B[lo:lo + chunk], A[lo:lo + chunk]
        for i, cm in enumerate(moments):
            diags, probs = laws[i]
            coeff = s * diags                                                   # (M, r)
            W = W0 + np.matmul(Bc[:, None] * coeff[None, :, None, :], Ac[:, None])   # (p, M, m, n)
            loss, G = loss_and_weight_grad(cm, W)
            gB = np.matmul(G, np.swapaxes(Ac, 1, 2)[:, None]) * coeff[None, :, None, :]
            gA = coeff[None, :, :, None] * np.matmul(np.swapaxes(Bc, 1, 2)[:, None], G)
            flat = np.concatenate([gB.reshape(*gB.shape[:2], -1), gA.reshape(*gA.shape[:2], -1)], axis=2)
            mean = np.einsum("q,pqd->pd", probs, flat)
            value[lo:lo + chunk] += loss @ probs / N
            cgrads[lo:lo + chunk, i] = mean
            cvars[lo:lo + chunk, i] = np.einsum("q,pq->p", probs, np.sum(flat ** 2, axis=2)) - np.sum(mean ** 2, axis=1)
    cvars = np.maximum(cvars, 0.0)   # a variance; rounding can leave -1e-17
    return SketchedBatch(value, cgrads.mean(axis=1), cvars.sum(axis=1) / N ** 2, cgrads, cvars)


def stack(points) -> tuple:
    """Stack single-layer points into arrays.

    Parameters
    ----------
    points : list
        Points, each ``[(B: (m, r), A: (r, n))]`` (one layer).

    Returns
    -------
    B : ndarray, shape (P, m, r)
    A : ndarray, shape (P, r, n)
    """
    return np.stack([p[0][0] for p in points]), np.stack([p[0][1] for p in points])


def instance_grads(problem, s: float, B: np.ndarray, A: np.ndarray, diags: np.ndarray, *, moments=None) -> np.ndarray:
    """``grad f~_i(X; S_i)`` for one given sketch per point and client.

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
    diags : ndarray, shape (P, N, r)
        ``diag(S_i)`` of client i's sketch at each point.
    moments : list of ClientMoments, optional
        Precomputed :func:`client_moments`.

    Returns
    -------
    ndarray, shape (P, N, d)
        Flattened ``[vec B; vec A]`` gradients, d = r (m + n).
    """
    moments = moments or client_moments(problem)
    W0 = problem.base_weights[0]
    out = np.empty((len(B), len(moments), B.shape[1] * B.shape[2] + A.shape[1] * A.shape[2]))
    for i, cm in enumerate(moments):
        c = s * diags[:, i]                                                  # (P, r)
        _, G = loss_and_weight_grad(cm, W0 + np.matmul(B * c[:, None, :], A))
        gB = np.matmul(G, np.swapaxes(A, 1, 2)) * c[:, None, :]
        gA = c[:, :, None] * np.matmul(np.swapaxes(B, 1, 2), G)
        out[:, i] = flatten(gB, gA)
    return out


@dataclass
class PointStats:
    """What the convergence claims read at each point t.

    Parameters
    ----------
    grad_sq_sketched : ndarray, shape (P,)
        ``||grad f^S||^2`` (w.r.t. [B; A]).
    grad_sq_plain : ndarray, shape (P,)
        ``||grad f||^2`` (w.r.t. [B; A]).
    value_sketched : ndarray, shape (P,)
        f^S.
    heterogeneity : ndarray, shape (P,)
        ``a_t = max_i ||grad f_i^S - grad f^S||^2`` (Assumption 4.3's left-hand side).
    """

    grad_sq_sketched: np.ndarray     # (P,)
    grad_sq_plain: np.ndarray        # (P,)
    value_sketched: np.ndarray       # (P,)
    heterogeneity: np.ndarray        # (P,)


def point_stats(problem, B: np.ndarray, A: np.ndarray, s: float, budgets) -> PointStats:
    """The :class:`PointStats` at P points: :func:`evaluate` under the sketch law (f^S) and S = I (f).

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    B : ndarray, shape (P, m, r)
        The B factors of P points.
    A : ndarray, shape (P, r, n)
        The A factors of the same points.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.

    Returns
    -------
    PointStats
    """
    moments = client_moments(problem)
    sketched = evaluate(problem, s, budgets, B, A, moments=moments)
    plain = evaluate(problem, s, budgets, B, A, law=unsketched_law, moments=moments)
    return PointStats(sketched.grad_sq, plain.grad_sq, sketched.value, sketched.heterogeneity)
