"""The constants of Assumptions 4.1-4.3 measured on the region a run visits.

For bilinear LoRA no constant is global (the Hessian of f_i(B, A) grows with ||B||, ||A||), so
every constant here is a maximum over a given list of points X = [(B, A)] -- the iterates of a
run -- and is reported with how it was obtained:

* L: largest spectral norm of the Hessian of f_i over clients and points. Hessian-vector
  products are exact (closed-form second derivative of the link); below DENSE_LIMIT
  coordinates the whole Hessian is assembled from them and diagonalised ("exact at points"),
  above it power iteration is used ("power iteration", a lower estimate of the max).
* sigma_s^2: E_S ||grad f~_i(X;S) - grad f_i^S(X)||^2 by enumerating every sketch ("exact at points").
* sigma_g^2: the exact variance of the minibatch gradient for uniform sampling of b of n_i
  rows without replacement, (n_i - b) / (b (n_i - 1)) * (1/n_i) sum_j ||g_j - g||^2, maximised
  over sketches ("exact at points"; 0 for full-batch clients).
* c_h, delta_h^2: every pair with max_i ||grad f_i^S - grad f^S||^2 <= c_h ||grad f^S||^2 + delta_h^2
  at all points; delta_h^2(c_h) is the smallest valid delta for a given c_h.
* f*: a lower bound of f^S: min_W f(W) over unconstrained W for least squares ("exact"),
  0 for cross-entropy ("bounded").

Only single-layer problems (least squares, logistic) have exact Hessian-vector products here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fslora_ref.lora import LayerFactors
from fslora_ref.seeding import SERVER, stream

from .sketched_objective import all_sketch_choices, instance_grad, sketched_grad

DENSE_LIMIT = 400


def _single_layer(problem):
    if problem.n_layers != 1:
        raise ValueError(f"exact Hessian-vector products need a single-layer problem, got {problem.n_layers} layers")


def _link_output_grads(problem, client: int, W: np.ndarray):
    """(outputs-side derivative per sample d_j: (..., n_i, n), softmax probs or None) at weight W: (..., m, n)."""
    data = problem.clients[client]
    out = data.X @ W
    if problem.link == "squared":
        return out - data.targets, None
    z = out - out.max(axis=-1, keepdims=True)
    P = np.exp(z)
    P /= P.sum(axis=-1, keepdims=True)
    D = P.copy()
    D[..., np.arange(D.shape[-2]), data.targets] -= 1.0
    return D, P


def hvp(problem, client: int, B: np.ndarray, A: np.ndarray, coeff: np.ndarray, U: np.ndarray, V: np.ndarray):
    """Exact Hessian-vector products of ``f(B, A) = loss_i(W0 + B diag(coeff) A)`` for a batch of directions.

    With G = grad_W loss and dG its directional derivative along ``dW = U c A + B c V``:
    ``H[U, V]_B = dG A^T c + G V^T c`` and ``H[U, V]_A = c U^T G + c B^T dG``.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    client : int
        The client i whose loss f_i is differentiated.
    B : ndarray, shape (m, q) or (P, m, q)
        The factor B of the point, or of P points sharing A (a leading batch axis).
    A : ndarray, shape (q, n)
        The factor A of the point.
    coeff : ndarray, shape (q,)
        The diagonal between them: the point is ``W0 + B diag(coeff) A`` (``s * diag(S)`` for a
        sketched point, ``s * ones`` for an unsketched one).
    U : ndarray, shape (d, m, q)
        The B-parts of d directions.
    V : ndarray, shape (d, q, n)
        The A-parts of the same directions.

    Returns
    -------
    HU : ndarray, shape (d, m, q), or (P, d, m, q) for a batch of points
        The B-parts of the products.
    HV : ndarray, shape (d, q, n), or (P, d, q, n) for a batch of points
        The A-parts of the products.

    Raises
    ------
    ValueError
        If the problem has more than one layer.
    """
    _single_layer(problem)
    X = problem.clients[client].X
    n_i = X.shape[0]
    W = problem.base_weights[0] + (B * coeff) @ A
    D, P = _link_output_grads(problem, client, W)
    G = X.T @ D / n_i
    # B may carry leading batch axes (..., m, q): [..., None, :, :] puts them in front of the d directions
    dW = (U * coeff) @ A + (B * coeff)[..., None, :, :] @ V     # (..., d, m, n)
    Z = X @ dW                                              # (..., d, n_i, n)
    if P is not None:                                       # softmax: dP = P * (Z - <P, Z>)
        P = P[..., None, :, :]
        Z = P * (Z - np.sum(P * Z, axis=-1, keepdims=True))
    dG = X.T @ Z / n_i                                      # (..., d, m, n)
    HU = (dG @ A.T + G[..., None, :, :] @ np.swapaxes(V, 1, 2)) * coeff
    HV = coeff[:, None] * (np.swapaxes(U, 1, 2) @ G[..., None, :, :] + np.swapaxes(B, -1, -2)[..., None, :, :] @ dG)
    return HU, HV


def dense_hessian(problem, client, B, A, coeff, hvp_fn=hvp) -> np.ndarray:
    """The Hessian of f_i in ``[vec B; vec A]`` coordinates, assembled from d exact Hessian-vector products.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    client : int
        The client i whose loss f_i is differentiated.
    B : ndarray, shape (m, q)
        The factor B of the point.
    A : ndarray, shape (q, n)
        The factor A of the point.
    coeff : ndarray, shape (q,)
        The diagonal between them: the point is ``W0 + B diag(coeff) A`` (``s * diag(S)`` for a
        sketched point, ``s * ones`` for an unsketched one).
    hvp_fn : callable, optional
        The product to assemble from (signature of :func:`hvp`; a broken one can be held to checks).

    Returns
    -------
    ndarray, shape (d, d)
        The symmetrised Hessian, d = q (m + n).
    """
    m, q = B.shape
    n = A.shape[1]
    d = q * (m + n)
    E = np.eye(d)
    HU, HV = hvp_fn(problem, client, B, A, coeff, E[:, :m * q].reshape(d, m, q), E[:, m * q:].reshape(d, q, n))
    H = np.concatenate([HU.reshape(d, -1), HV.reshape(d, -1)], axis=1)
    return 0.5 * (H + H.T)


def _dense_hessians(problem, client, Bs, A, coeff) -> np.ndarray:
    """:func:`dense_hessian` (with :func:`hvp`) at the points [B_p; A], stacked: (P, d, d) for Bs: (P, m, q).

    One :func:`hvp` call with the points as a leading batch axis: matmul and the elementwise ops run
    matrix by matrix on the same operands, so every entry is bit-identical to P single calls; only the
    Python-level calls are shared."""
    P, m, q = Bs.shape
    n = A.shape[1]
    d = q * (m + n)
    E = np.eye(d)
    HU, HV = hvp(problem, client, Bs, A, coeff, E[:, :m * q].reshape(d, m, q), E[:, m * q:].reshape(d, q, n))
    H = np.concatenate([HU.reshape(P, d, -1), HV.reshape(P, d, -1)], axis=2)
    return 0.5 * (H + np.swapaxes(H, 1, 2))


def hessian_norm(problem, client, B, A, coeff, *, hvp_fn=hvp, iters: int = 200, seed: int = 0) -> tuple:
    """The spectral norm of the Hessian of f_i at one point, and how it was obtained.

    Exact eigenvalues of :func:`dense_hessian` when d = q (m + n) <= ``DENSE_LIMIT``, else
    :func:`power_iteration` (a lower estimate).

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    client : int
        The client i whose loss f_i is differentiated.
    B : ndarray, shape (m, q)
        The factor B of the point.
    A : ndarray, shape (q, n)
        The factor A of the point.
    coeff : ndarray, shape (q,)
        The diagonal between them: the point is ``W0 + B diag(coeff) A`` (``s * diag(S)`` for a
        sketched point, ``s * ones`` for an unsketched one).
    hvp_fn : callable, optional
        The Hessian-vector product (signature of :func:`hvp`).
    iters : int, optional
        Power iterations (large points only).
    seed : int, optional
        The seed of the power iteration's start.

    Returns
    -------
    norm : float
        ``||Hessian||_2``.
    method : str
        "exact" or "power iteration".
    """
    m, q = B.shape
    n = A.shape[1]
    if q * (m + n) <= DENSE_LIMIT:
        return float(np.max(np.abs(np.linalg.eigvalsh(dense_hessian(problem, client, B, A, coeff, hvp_fn))))), "exact"
    return power_iteration(lambda U, V: hvp_fn(problem, client, B, A, coeff, U[None], V[None]),
                           (m, q), (q, n), iters, seed), "power iteration"


def power_iteration(op, shape_U, shape_V, iters: int, seed: int) -> float:
    """The largest absolute eigenvalue of a symmetric operator on (U, V) pairs, by power iteration.

    Parameters
    ----------
    op : callable
        ``op(U: (m, q), V: (q, n)) -> (HU: (1, m, q), HV: (1, q, n))``.
    shape_U : tuple of int
        (m, q).
    shape_V : tuple of int
        (q, n).
    iters : int
        The number of iterations.
    seed : int
        The seed of the random start (server evaluation stream).

    Returns
    -------
    float
        The norm of the last product, an estimate from below of the largest absolute eigenvalue.
    """
    rng = stream(seed, round=-1, client=SERVER, purpose="eval")
    U, V = rng.standard_normal(shape_U), rng.standard_normal(shape_V)
    lam = 0.0
    for _ in range(iters):
        norm = np.sqrt(np.sum(U * U) + np.sum(V * V))
        U, V = U / norm, V / norm
        HU, HV = op(U, V)
        lam = float(np.sqrt(np.sum(HU * HU) + np.sum(HV * HV)))
        U, V = HU[0], HV[0]
    return lam


@dataclass
class Constant:
    """A measured constant, how it was obtained and over what.

    Parameters
    ----------
    value : float
        The constant.
    method : str
        How it was obtained: "exact", "exact at points", "power iteration (lower estimate)",
        "bounded", "certified" or "sampled".
    note : str, optional
        Over what it was measured, or why the bound holds.
    """

    value: float
    method: str            # exact / exact at points / power iteration / bounded / sampled
    note: str = ""

    def to_json(self):
        """The constant as a JSON-ready dict.

        Returns
        -------
        dict
            ``{"value": float, "method": str, "note": str}``.
        """
        return {"value": float(self.value), "method": self.method, "note": self.note}


def every_client(problem, points) -> list:
    """Every client paired with every point.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        The problem (its ``n_clients``).
    points : list
        Points X, each a list of per-layer factor pairs ``[(B: (m, r), A: (r, n))]``.

    Returns
    -------
    list of (int, list)
        ``[(client, X)]``, clients varying fastest.
    """
    return [(i, layers) for layers in points for i in range(problem.n_clients)]


def smoothness(problem, pairs, s: float, *, budgets=None, hvp_fn=hvp) -> Constant:
    """L: the largest Hessian spectral norm of an unsketched f_i over the given (client, point) pairs.

    If ``budgets`` is given, each client's Hessian is also taken at every sketched point ``[B S; A]``
    of its sketch law: Proposition D.4 bounds the smoothness of ``f~_i(.; S)`` by (r/k_i)^2 times
    f_i's at ``[B S; A]``, so the L of L-bar and L-tilde must hold there too.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem.
    pairs : list of (int, list)
        ``[(client, [(B: (m, r), A: (r, n))])]`` (e.g. from :func:`every_client`).
    s : float
        The LoRA scale.
    budgets : sequence of int, optional
        The sketch sizes k_i per client.
    hvp_fn : callable, optional
        The Hessian-vector product (signature of :func:`hvp`).

    Returns
    -------
    Constant
        Method "exact at points", or "power iteration (lower estimate)" if any point was too large.
    """
    best, methods, count = 0.0, set(), 0
    for i, layers in pairs:
        (B, A), = layers
        ones = s * np.ones(B.shape[1])
        points = [B] if budgets is None else [B] + [B * d for (d,) in all_sketch_choices(layers, [budgets[i]])]
        if B.shape[1] * (B.shape[0] + A.shape[1]) <= DENSE_LIMIT:
            # hessian_norm's exact branch, with one batched eigvalsh per pair (LAPACK runs matrix by matrix:
            # the same eigenvalues, without a Python-level call per Hessian)
            hessians = (_dense_hessians(problem, i, np.stack(points), A, ones) if hvp_fn is hvp else
                        np.stack([dense_hessian(problem, i, Bx, A, ones, hvp_fn) for Bx in points]))
            eigs = np.linalg.eigvalsh(hessians)
            found = [(float(v), "exact") for v in np.max(np.abs(eigs), axis=1)]
        else:
            found = [hessian_norm(problem, i, Bx, A, ones, hvp_fn=hvp_fn) for Bx in points]
        for val, how in found:
            best, methods, count = max(best, val), methods | {how}, count + 1
    method = "exact at points" if methods == {"exact"} else "power iteration (lower estimate)"
    where = "" if budgets is None else " and every sketched point [B S; A] of the client's sketch law"
    return Constant(best, method, f"max over {len(pairs)} (client, visited point) pairs{where} ({count} Hessians)")


def sketch_variance(problem, pairs, s: float, budgets) -> Constant:
    """sigma_s^2: the largest sketch variance ``E_S ||grad f~_i(X; S) - grad f_i^S(X)||^2`` over the pairs.

    Every sketch of client i (budget k_i on every layer) is enumerated, so the expectation is exact.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        The problem.
    pairs : list of (int, list)
        ``[(client, [(B: (m, r), A: (r, n)) per layer])]``.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.

    Returns
    -------
    Constant
        Method "exact at points".
    """
    best = 0.0
    for i, layers in pairs:
        G = np.array([_flat(instance_grad(problem, i, layers, s, d)[1])
                      for d in all_sketch_choices(layers, [budgets[i]] * problem.n_layers)])
        best = max(best, float(np.mean(np.sum((G - G.mean(axis=0)) ** 2, axis=1))))
    return Constant(best, "exact at points", f"all sketches enumerated; max over {len(pairs)} (client, point) pairs")


def minibatch_variance(problem, pairs, s: float, budgets) -> Constant:
    """sigma_g^2: the exact variance of the b-of-n_i minibatch gradient of ``f~_i(X; S)``, maximised.

    For uniform sampling of b rows without replacement the variance is
    ``(n_i - b) / (b (n_i - 1)) * (1/n_i) sum_j ||g_j - g||^2``; it is maximised over the pairs and
    over every sketch of the client's law. Full-batch problems give 0.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem (its ``batch_size`` b; None for full batch).
    pairs : list of (int, list)
        ``[(client, [(B: (m, r), A: (r, n))])]``.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.

    Returns
    -------
    Constant
        Method "exact at points" ("exact" for full batch).
    """
    b = problem.batch_size
    if b is None:
        return Constant(0.0, "exact", "full-batch clients: the local gradient is deterministic")
    _single_layer(problem)
    best = 0.0
    for i, layers in pairs:
        (B, A), = layers
        X = problem.clients[i].X
        n_i = X.shape[0]
        for (d,) in all_sketch_choices(layers, [budgets[i]]):
            c = s * d
            D, _ = _link_output_grads(problem, i, problem.base_weights[0] + (B * c) @ A)
            # per-sample factor gradients are rank one: x_j^T (d_j A^T c) and (x_j B c)^T d_j
            DA, XB = D @ A.T * c, X @ B * c
            sq = np.sum(X * X, axis=1) * np.sum(DA ** 2, axis=1) + np.sum(XB ** 2, axis=1) * np.sum(D * D, axis=1)
            mean2 = float(np.sum((X.T @ DA) ** 2) + np.sum((XB.T @ D) ** 2)) / n_i ** 2   # ||mean gradient||^2
            pop = max(float(np.mean(sq)) - mean2, 0.0)
            best = max(best, (n_i - b) / (b * (n_i - 1)) * pop)
    return Constant(best, "exact at points", f"batch {b} without replacement; max over sketches and {len(pairs)} (client, point) pairs")


@dataclass
class Heterogeneity:
    """The data of Assumption 4.3 at each point: ``a = max_i ||grad f_i^S - grad f^S||^2`` and ``g = ||grad f^S||^2``.

    Parameters
    ----------
    a : list of float, optional
        The largest client deviation at each point.
    g : list of float, optional
        The squared global gradient norm at each point.
    """

    a: list = field(default_factory=list)
    g: list = field(default_factory=list)

    def delta2(self, c_h: float) -> float:
        """The smallest delta_h^2 with ``a <= c_h g + delta_h^2`` at every point.

        Parameters
        ----------
        c_h : float
            The multiplicative heterogeneity constant.

        Returns
        -------
        float
            ``max(0, max_points(a - c_h g))``.
        """
        return float(max(0.0, max(a - c_h * g for a, g in zip(self.a, self.g))))


def heterogeneity(problem, points, s: float, budgets) -> Heterogeneity:
    """The Assumption 4.3 data over ``points``, with the exact sketched gradients grad f_i^S.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        The problem.
    points : list
        Points X, each ``[(B: (m, r), A: (r, n)) per layer]``.
    s : float
        The LoRA scale.
    budgets : sequence of int
        The sketch sizes k_i per client.

    Returns
    -------
    Heterogeneity
        One (a, g) entry per point.
    """
    het = Heterogeneity()
    for layers in points:
        per = [_flat(sketched_grad(problem, i, layers, s, [budgets[i]] * problem.n_layers))
               for i in range(problem.n_clients)]
        mean = np.mean(per, axis=0)
        het.a.append(max(float(np.sum((p - mean) ** 2)) for p in per))
        het.g.append(float(np.sum(mean * mean)))
    return het


def lower_bound(problem) -> Constant:
    """A lower bound ``f* <= inf f^S``: the exact ``min_W f`` for single-layer least squares, else 0.

    ``f^S >= f >= min_W f`` (Jensen), and the minimum over unconstrained W is a linear solve.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        The problem.

    Returns
    -------
    Constant
        Method "exact" (least squares) or "bounded" (0: the loss is non-negative).
    """
    if problem.link == "squared" and problem.n_layers == 1:
        N = problem.n_clients
        lhs = sum(c.X.T @ c.X / (N * c.size) for c in problem.clients)
        rhs = sum(c.X.T @ c.targets / (N * c.size) for c in problem.clients)
        W = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
        return Constant(problem.global_loss([W]), "exact", "min over unconstrained W of f (f^S >= f)")
    return Constant(0.0, "bounded", "loss is non-negative")


def _flat(pairs) -> np.ndarray:
    return np.concatenate([np.concatenate([dB.ravel(), dA.ravel()]) for dB, dA in pairs])


def hvp_error(problem, client, B, A, coeff, *, hvp_fn=hvp, seed: int = 0, eps: float = 1e-5) -> float:
    """The relative error of ``hvp_fn`` against a central difference of the exact gradient, along one random direction.

    ``max |H v - (grad(X + eps v) - grad(X - eps v)) / (2 eps)| / max |H v|``; the central difference
    has O(eps^2) error, so a correct product gives a tiny value.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer least-squares or logistic problem.
    client : int
        The client i whose loss f_i is differentiated.
    B : ndarray, shape (m, q)
        The factor B of the point.
    A : ndarray, shape (q, n)
        The factor A of the point.
    coeff : ndarray, shape (q,)
        The diagonal between them: the point is ``W0 + B diag(coeff) A`` (``s * diag(S)`` for a
        sketched point, ``s * ones`` for an unsketched one).
    hvp_fn : callable, optional
        The product checked (signature of :func:`hvp`).
    seed : int, optional
        The seed of the random direction.
    eps : float, optional
        The finite-difference step.

    Returns
    -------
    float
    """
    rng = stream(seed, round=-1, client=SERVER, purpose="eval")
    U, V = rng.standard_normal(B.shape), rng.standard_normal(A.shape)
    HU, HV = hvp_fn(problem, client, B, A, coeff, U[None], V[None])
    grads = [problem.loss_and_factor_grads(client, [LayerFactors(B + e * U, A + e * V, coeff)])[1][0]
             for e in (eps, -eps)]
    fd = [(p - m) / (2 * eps) for p, m in zip(*grads)]
    scale = max(float(np.max(np.abs(HU))), float(np.max(np.abs(HV))), 1e-12)
    return max(float(np.max(np.abs(HU[0] - fd[0]))), float(np.max(np.abs(HV[0] - fd[1])))) / scale
