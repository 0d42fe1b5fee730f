"""The sketched objective f^S (docs/spec.md §1, eq. 2), exactly.

f_i^S(B, A) = E_{S ~ S_i} f_i(W0 + B S A) with one independent sketch per layer.
Two exact routes: the closed form for single-layer least squares (docs/spec.md §2), and
enumeration over all C(r, k) index sets for any family when that is small enough.
"""
from __future__ import annotations

import itertools
from math import comb

import numpy as np

from ..sketch import Sketch, sketch_moments

MAX_ENUMERATION = 20_000  # joint index-set combinations per client


def least_squares_regulariser(X: np.ndarray, B: np.ndarray, A: np.ndarray, s: float, k: int) -> float:
    """The implicit rank-dropout penalty f_i^S - f_i for ``f_i = (1/2 n_i)||X_i W - Y_i||^2``::

        (s^2 / 2 n_i) c_k ( r sum_j ||X b_j||^2 ||a_j||^2 - ||X B A||_F^2 ),  c_k = (r-k)/(k(r-1))

    Non-negative by Cauchy-Schwarz.

    Parameters
    ----------
    X : ndarray, shape (n_i, m)
    B : ndarray, shape (m, r)
    A : ndarray, shape (r, n)
    s : float
        The LoRA scaling.
    k : int
        The sketch size.

    Returns
    -------
    float
    """
    r = B.shape[1]
    c_k = sketch_moments(r, k)["c_k"]
    if c_k == 0.0:
        return 0.0
    XB = X @ B
    col = np.sum(XB * XB, axis=0) * np.sum(A * A, axis=1)
    prod = XB @ A
    return s * s * c_k * (r * float(np.sum(col)) - float(np.sum(prod * prod))) / (2.0 * X.shape[0])


def sketched_loss(problem, client: int, layers, s: float, ks) -> float:
    """f_i^S at global factors, exactly.

    Uses the closed form for single-layer least squares, enumeration otherwise.

    Parameters
    ----------
    problem : Problem
    client : int
        The client i.
    layers : list of tuple of ndarray
        ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l).
    s : float
        The LoRA scaling.
    ks : list of int
        The sketch size k_l per layer.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When enumeration would exceed MAX_ENUMERATION combinations.
    """
    weights = [W0 + s * B @ A for W0, (B, A) in zip(problem.base_weights, layers)]
    if problem.link == "squared" and problem.n_layers == 1:
        B, A = layers[0]
        return problem.loss(client, weights) + least_squares_regulariser(problem.clients[client].X, B, A, s, ks[0])
    return enumerate_sketched(lambda w: problem.loss(client, w), problem.base_weights, layers, s, ks)


def enumerate_sketched(loss_of_weights, base_weights, layers, s: float, ks) -> float:
    """E_S loss(W0 + s B S A) by enumerating every joint choice of per-layer index sets.

    Parameters
    ----------
    loss_of_weights : callable
        ``loss_of_weights([W_l]) -> float``.
    base_weights : list of ndarray
        W0_l, shape (m_l, n_l).
    layers : list of tuple of ndarray
        ``[(B_l, A_l)]``, shapes (m_l, r_l) and (r_l, n_l).
    s : float
        The LoRA scaling.
    ks : list of int
        The sketch size per layer.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When the combinations exceed MAX_ENUMERATION.
    """
    ranks = [B.shape[1] for B, _ in layers]
    total_combos = int(np.prod([comb(r, k) for r, k in zip(ranks, ks)]))
    if total_combos > MAX_ENUMERATION:
        raise ValueError(f"enumeration needs {total_combos} index-set combinations, above MAX_ENUMERATION={MAX_ENUMERATION}")
    per_layer = [list(itertools.combinations(range(r), k)) for r, k in zip(ranks, ks)]
    acc = 0.0
    for choice in itertools.product(*per_layer):
        weights = [W0 + s * Sketch(r, np.array(I)).sketched_product(B, A)
                   for W0, (B, A), r, I in zip(base_weights, layers, ranks, choice)]
        acc += loss_of_weights(weights)
    return acc / total_combos


def global_sketched_loss(problem, layers, config) -> float | None:
    """f^S = (1/N) sum_i f_i^S at the server's factors, when it can be computed exactly.

    Parameters
    ----------
    problem : Problem
    layers : list of tuple of ndarray
        ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l).
    config : FedConfig
        Client i's budget ``config.budgets[i]`` is used on every layer.

    Returns
    -------
    float or None
        None when enumeration would be too large for this family.
    """
    return mean_sketched_loss(exact_sketched_loss(problem, i, layers, config.lora_scaling,
                                                  [config.budgets[i]] * problem.n_layers)
                              for i in range(problem.n_clients))


def exact_sketched_loss(problem, client: int, layers, s: float, ks) -> float | None:
    """:func:`sketched_loss`, or None when it has no exact value (enumeration too large).

    Parameters
    ----------
    problem, client, layers, s, ks
        As :func:`sketched_loss`.

    Returns
    -------
    float or None
    """
    try:
        return sketched_loss(problem, client, layers, s, ks)
    except ValueError:  # enumeration too large for this family: no exact value
        return None


def mean_sketched_loss(values) -> float | None:
    """f^S = (1/N) sum_i f_i^S from the clients' values, or None if one has no exact value.

    Parameters
    ----------
    values : iterable of float or None
        f_i^S in client order (a generator stops at the first None).

    Returns
    -------
    float or None
    """
    taken = []
    for value in values:
        if value is None:
            return None
        taken.append(value)
    return float(np.mean(taken))
