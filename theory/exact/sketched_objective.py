"""The sketched objective f_i^S and its gradient, exactly (docs/spec.md §1-2, Lemma 3.2).

Notation: X = [B; A] with B: (m, r), A: (r, n) per layer; f_i(X) = loss_i(W0 + s B A);
f~_i(X; S) = loss_i(W0 + s B S A); f_i^S(X) = E_S f~_i(X; S). The value of f_i^S comes from
``fslora_ref.problems.sketched`` (closed form for single-layer least squares, enumeration
otherwise); this module adds the gradients:

* ``regulariser_grad``: gradient of the implicit rank-dropout penalty (least squares),
* ``sketched_grad``: grad f_i^S, closed form for least squares, enumeration otherwise,
* ``lemma_grad``: Lemma 3.2's formula grad_B f~ = s G A^T S^T, grad_A f~ = s S^T B^T G (G = grad_W loss),
  as the core's masked client evaluates it.
"""
from __future__ import annotations

import functools
import itertools
from math import comb

import numpy as np

from fslora_ref.client import dense_factor_grads
from fslora_ref.lora import LayerFactors
from fslora_ref.problems.sketched import MAX_ENUMERATION, least_squares_regulariser, sketched_loss
from fslora_ref.sketch import Sketch, sketch_moments

__all__ = ["least_squares_regulariser", "sketched_loss", "regulariser_grad", "sketched_grad",
           "enumerated_grad", "instance_grad", "lemma_grad", "all_sketch_choices"]


def regulariser_grad(X: np.ndarray, B: np.ndarray, A: np.ndarray, s: float, k: int):
    """The gradient of the implicit rank-dropout penalty of single-layer least squares.

    ``R = (s^2 c_k / 2 n_i)(r sum_j ||X b_j||^2 ||a_j||^2 - ||X B A||^2)``, so::

        dR/dB = (s^2 c_k / n_i) X^T X B (r diag(||a_j||^2) - A A^T)
        dR/dA = (s^2 c_k / n_i) (r diag(||X b_j||^2) - B^T X^T X B) A

    Parameters
    ----------
    X : ndarray, shape (n_i, m)
        The client's inputs.
    B : ndarray, shape (m, r)
        The factor B (b_j its columns).
    A : ndarray, shape (r, n)
        The factor A (a_j its rows).
    s : float
        The LoRA scale.
    k : int
        The client's sketch size, in [1, r].

    Returns
    -------
    dB : ndarray, shape (m, r)
    dA : ndarray, shape (r, n)
    """
    r = B.shape[1]
    c = s * s * sketch_moments(r, k)["c_k"] / X.shape[0]
    XB = X @ B
    gram = XB.T @ XB                                        # (r, r) = B^T X^T X B
    dB = c * (X.T @ XB) @ (r * np.diag(np.sum(A * A, axis=1)) - A @ A.T)
    dA = c * (r * np.diag(np.diag(gram)) - gram) @ A
    return dB, dA


def unsketched_factors(layers, s: float):
    """[LayerFactors] of the unsketched objective f_i at layers = [(B, A)]."""
    return [LayerFactors(B, A, s * np.ones(B.shape[1])) for B, A in layers]


def instance_grad(problem, client: int, layers, s: float, diagonals, batch=None):
    """The loss and factor gradients of ``f~_i(X; S)`` for one given sketch per layer.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        The problem.
    client : int
        The client i.
    layers : list of (ndarray, ndarray)
        The point X: ``[(B: (m, r), A: (r, n))]`` per layer.
    s : float
        The LoRA scale.
    diagonals : sequence of ndarray
        ``diag(S)`` of each layer's sketch, shape (r_l,).
    batch : ndarray of int, optional
        The rows of the client's data to use (None: all).

    Returns
    -------
    loss : float
    grads : list of (ndarray, ndarray)
        ``[(dB: (m, r), dA: (r, n))]`` per layer.
    """
    factors = [LayerFactors(B, A, s * d) for (B, A), d in zip(layers, diagonals)]
    return problem.loss_and_factor_grads(client, factors, batch)


def all_sketch_choices(layers, ks):
    """Every joint choice of per-layer ``diag(S)``, each equally likely (cached).

    Parameters
    ----------
    layers : list of (ndarray, ndarray)
        The point X: ``[(B: (m, r), A: (r, n))]`` per layer.
    ks : sequence of int
        The sketch size of each layer.

    Returns
    -------
    list of tuple of ndarray
        One tuple per joint choice, holding each layer's ``diag(S)``: shape (r_l,).

    Raises
    ------
    ValueError
        If the number of choices exceeds ``MAX_ENUMERATION``.
    """
    return _choices(tuple(B.shape[1] for B, _ in layers), tuple(int(k) for k in ks))


@functools.lru_cache(maxsize=256)
def _choices(ranks, ks):
    total = int(np.prod([comb(r, k) for r, k in zip(ranks, ks)]))
    if total > MAX_ENUMERATION:
        raise ValueError(f"enumeration needs {total} index-set combinations, above MAX_ENUMERATION={MAX_ENUMERATION}")
    per_layer = [[Sketch(r, np.array(I)).diagonal() for I in itertools.combinations(range(r), k)]
                 for r, k in zip(ranks, ks)]
    return list(itertools.product(*per_layer))


def enumerated_grad(problem, client: int, layers, s: float, ks):
    """``grad f_i^S = E_S grad f~_i(X; S)``, by enumerating every joint index-set choice.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        The problem.
    client : int
        The client i.
    layers : list of (ndarray, ndarray)
        The point X: ``[(B: (m, r), A: (r, n))]`` per layer.
    s : float
        The LoRA scale.
    ks : sequence of int
        The sketch size of each layer.

    Returns
    -------
    list of (ndarray, ndarray)
        ``[(dB: (m, r), dA: (r, n))]`` per layer.
    """
    choices = all_sketch_choices(layers, ks)
    acc = [(np.zeros_like(B), np.zeros_like(A)) for B, A in layers]
    for diags in choices:
        _, g = instance_grad(problem, client, layers, s, diags)
        acc = [(aB + dB, aA + dA) for (aB, aA), (dB, dA) in zip(acc, g)]
    return [(aB / len(choices), aA / len(choices)) for aB, aA in acc]


def sketched_grad(problem, client: int, layers, s: float, ks):
    """``grad f_i^S`` at X: closed form for single-layer least squares, exact enumeration otherwise.

    The closed form is ``grad f_i`` plus :func:`regulariser_grad`; the enumeration is
    :func:`enumerated_grad`.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        The problem.
    client : int
        The client i.
    layers : list of (ndarray, ndarray)
        The point X: ``[(B: (m, r), A: (r, n))]`` per layer.
    s : float
        The LoRA scale.
    ks : sequence of int
        The sketch size of each layer.

    Returns
    -------
    list of (ndarray, ndarray)
        ``[(dB: (m, r), dA: (r, n))]`` per layer.
    """
    if problem.link == "squared" and problem.n_layers == 1:
        _, g = problem.loss_and_factor_grads(client, unsketched_factors(layers, s))
        (B, A), (gB, gA) = layers[0], g[0]
        rB, rA = regulariser_grad(problem.clients[client].X, B, A, s, ks[0])
        return [(gB + rB, gA + rA)]
    return enumerated_grad(problem, client, layers, s, ks)


def global_sketched(problem, layers, s: float, budgets):
    """(f^S, grad f^S) = (1/N) sum_i (f_i^S, grad f_i^S); budgets: k_i per client (all layers)."""
    n = problem.n_clients
    value = 0.0
    grad = [(np.zeros_like(B), np.zeros_like(A)) for B, A in layers]
    for i in range(n):
        ks = [budgets[i]] * problem.n_layers
        value += sketched_loss(problem, i, layers, s, ks) / n
        g = sketched_grad(problem, i, layers, s, ks)
        grad = [(aB + dB / n, aA + dA / n) for (aB, aA), (dB, dA) in zip(grad, g)]
    return value, grad


def lemma_grad(problem, client: int, B: np.ndarray, A: np.ndarray, diag_S: np.ndarray, s: float):
    """Lemma 3.2 as the core's Algorithm-1 client computes it (``fslora_ref.client.dense_factor_grads``).

    With ``G = grad_W loss`` at ``W0 + s B S A``: ``grad_B = s G A^T S^T`` and ``grad_A = s S^T B^T G``.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem.
    client : int
        The client i.
    B : ndarray, shape (m, r)
        The factor B.
    A : ndarray, shape (r, n)
        The factor A.
    diag_S : ndarray, shape (r,)
        ``diag(S)``.
    s : float
        The LoRA scale.

    Returns
    -------
    grad_B : ndarray, shape (m, r)
    grad_A : ndarray, shape (r, n)
    """
    _, ((gB, gA),) = dense_factor_grads(problem, client, [LayerFactors(B, A, s * diag_S)], None)
    return gB, gA


def flat_norm2(pairs) -> float:
    """||[dB; dA]||^2 summed over layers."""
    return float(sum(np.sum(dB * dB) + np.sum(dA * dA) for dB, dA in pairs))
