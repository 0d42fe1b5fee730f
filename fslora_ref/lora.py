"""LoRA factors of one adapted weight, and the gather/scatter of a sketch's submatrix.

Convention (docs/spec.md §8, row vectors): an adapted layer maps x (1, m) to x W with

    W = W0 + B diag(coeff) A,   B: (m, r) input side,  A: (r, n) output side

``coeff`` carries the LoRA scaling s and the sketch: s * ones(r) unsketched, s * diag(S) in the
full-size masked form, s * (r/k) * ones(k) in the submatrix form. PEFT stores the transposed
pair: ``lora_A.weight`` (r, in) = B^T and ``lora_B.weight`` (out, r) = A^T.

Initialisation follows LoRA/PEFT: the input-side factor is random, the output-side factor is
zero, so B A = 0 at the start.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .sketch import Sketch


class LayerFactors(NamedTuple):
    """What a forward pass needs for one layer: W = W0 + delta + B diag(coeff) A.

    Parameters
    ----------
    B : ndarray, shape (m, q)
    A : ndarray, shape (q, n)
    coeff : ndarray, shape (q,)
        The per-rank coefficient (LoRA scaling, times the sketch's diagonal for FSLoRA).
    delta : ndarray, shape (m, n), optional
        A dense offset merged into the base (FLoRA); None means 0.
    """

    B: np.ndarray              # (m, q)
    A: np.ndarray              # (q, n)
    coeff: np.ndarray          # (q,)
    delta: np.ndarray | None = None  # (m, n) dense offset merged into the base (FLoRA); None = 0


def init_lora(m: int, n: int, rank: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """PEFT-style init: B uniform on (-1/sqrt(m), 1/sqrt(m)), A = 0.

    Parameters
    ----------
    m, n : int
        The weight's shape (m, n).
    rank : int
        The rank r.
    rng : numpy.random.Generator
        The stream B is drawn from.

    Returns
    -------
    B : ndarray, shape (m, r)
    A : ndarray, shape (r, n)
        Zeros.
    """
    bound = 1.0 / np.sqrt(m)
    return rng.uniform(-bound, bound, size=(m, rank)), np.zeros((rank, n))


def gather(B: np.ndarray, A: np.ndarray, sketch: Sketch) -> tuple[np.ndarray, np.ndarray]:
    """The column block of B and row block of A a client trains (copies).

    Parameters
    ----------
    B : ndarray, shape (m, r)
    A : ndarray, shape (r, n)
    sketch : Sketch
        Its ``indices`` I (k of them).

    Returns
    -------
    B_I : ndarray, shape (m, k)
    A_I : ndarray, shape (k, n)
    """
    return B[:, sketch.indices].copy(), A[sketch.indices, :].copy()


def scatter(shape_B, shape_A, dB_I: np.ndarray, dA_I: np.ndarray, indices: np.ndarray):
    """Zero-filled full-size (dB, dA) with the uploaded blocks put back at ``indices``.

    Parameters
    ----------
    shape_B : tuple of int
        (m, r).
    shape_A : tuple of int
        (r, n).
    dB_I : ndarray, shape (m, k)
    dA_I : ndarray, shape (k, n)
    indices : ndarray of int, shape (k,)

    Returns
    -------
    dB : ndarray, shape (m, r)
    dA : ndarray, shape (r, n)
    """
    dB = np.zeros(shape_B)
    dA = np.zeros(shape_A)
    dB[:, indices] = dB_I
    dA[indices, :] = dA_I
    return dB, dA


def dense_update(B: np.ndarray, A: np.ndarray, coeff: np.ndarray) -> np.ndarray:
    """B diag(coeff) A.

    Parameters
    ----------
    B : ndarray, shape (m, q)
    A : ndarray, shape (q, n)
    coeff : ndarray, shape (q,)

    Returns
    -------
    ndarray, shape (m, n)
    """
    return (B * coeff[None, :]) @ A
