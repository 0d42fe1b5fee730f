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
    """What a forward pass needs for one layer: W = W0 + delta + B diag(coeff) A."""

    B: np.ndarray              # (m, q)
    A: np.ndarray              # (q, n)
    coeff: np.ndarray          # (q,)
    delta: np.ndarray | None = None  # (m, n) dense offset merged into the base (FLoRA); None = 0


def init_lora(m: int, n: int, rank: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """PEFT-style init: B: (m, r) ~ U(-1/sqrt(m), 1/sqrt(m)), A: (r, n) = 0."""
    bound = 1.0 / np.sqrt(m)
    return rng.uniform(-bound, bound, size=(m, rank)), np.zeros((rank, n))


def gather(B: np.ndarray, A: np.ndarray, sketch: Sketch) -> tuple[np.ndarray, np.ndarray]:
    """(B_I, A_I): the (m, k) column block and (k, n) row block a client trains (copies)."""
    return B[:, sketch.indices].copy(), A[sketch.indices, :].copy()


def scatter(shape_B, shape_A, dB_I: np.ndarray, dA_I: np.ndarray, indices: np.ndarray):
    """Zero-filled full-size (dB, dA) with the uploaded blocks put back at ``indices``."""
    dB = np.zeros(shape_B)
    dA = np.zeros(shape_A)
    dB[:, indices] = dB_I
    dA[indices, :] = dA_I
    return dB, dA


def dense_update(B: np.ndarray, A: np.ndarray, coeff: np.ndarray) -> np.ndarray:
    """B diag(coeff) A: (m, n)."""
    return (B * coeff[None, :]) @ A
