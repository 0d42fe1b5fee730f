"""The random-k sketch of FSLoRA (docs/spec.md §2).

    S = (r/k) * sum_{j in I} e_j e_j^T,   I uniform among the k-subsets of {0..r-1}

S is diagonal, so it is stored as the index set I (sorted) plus the scale r/k.
B S A = (r/k) B[:, I] A[I, :]: the sketch selects columns of B and rows of A.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validation import MAX_RANK, check_int


@dataclass(frozen=True)
class Sketch:
    """One draw of the random-k sketch: ``indices`` (sorted, length k) out of ``rank`` r.

    S = (r/k) diag(1[j in I]) is stored as its index set I; the methods apply it without forming
    the (r, r) matrix.

    Parameters
    ----------
    rank : int
        The LoRA rank r (1 <= r <= MAX_RANK).
    indices : array_like of int, shape (k,)
        The selected coordinates I: 1 to r distinct integers in [0, r - 1] (stored sorted, int64).

    Raises
    ------
    TypeError
        If ``indices`` are not integers.
    ValueError
        If ``rank`` or ``indices`` are out of range, repeated or not 1-D.

    Examples
    --------
    >>> import numpy as np
    >>> from fslora_ref import Sketch
    >>> S = Sketch(4, [2, 0])
    >>> S.k, S.scale, S.indices.tolist()
    (2, 2.0, [0, 2])
    >>> S.diagonal().tolist()
    [2.0, 0.0, 2.0, 0.0]
    >>> B, A = np.ones((3, 4)), np.ones((4, 5))
    >>> bool(np.allclose(S.sketched_product(B, A), B @ S.dense() @ A))
    True
    """

    rank: int
    indices: np.ndarray

    def __post_init__(self):
        check_int("rank", self.rank, low=1, high=MAX_RANK)
        idx = np.asarray(self.indices)
        if idx.size and (idx.dtype == bool or idx.dtype.kind not in "iu"):  # 1.7 must not become 1
            raise TypeError(f"indices must be integers, got {np.asarray(self.indices).tolist()!r} (dtype {idx.dtype})")
        if idx.ndim != 1 or idx.size < 1 or idx.size > self.rank:
            raise ValueError(f"indices must be a 1-D set of 1..{self.rank} entries, got shape {idx.shape}")
        if np.any(idx < 0) or np.any(idx >= self.rank) or np.unique(idx).size != idx.size:
            raise ValueError(f"indices must be distinct integers in [0, {self.rank - 1}], got {idx.tolist()}")
        object.__setattr__(self, "indices", np.sort(idx.astype(np.int64)))

    @property
    def k(self) -> int:
        """The sketch size k = len(indices)."""
        return int(self.indices.size)

    @property
    def scale(self) -> float:
        """The nonzero diagonal value r/k."""
        return self.rank / self.k

    def diagonal(self) -> np.ndarray:
        """diag(S): r/k on I and 0 elsewhere.

        Returns
        -------
        ndarray, shape (r,)
        """
        d = np.zeros(self.rank)
        d[self.indices] = self.scale
        return d

    def dense(self) -> np.ndarray:
        """S as a dense matrix.

        Returns
        -------
        ndarray, shape (r, r)
        """
        return np.diag(self.diagonal())

    def mask(self) -> np.ndarray:
        """The selected coordinates as a mask.

        Returns
        -------
        ndarray of bool, shape (r,)
            True on I.
        """
        m = np.zeros(self.rank, dtype=bool)
        m[self.indices] = True
        return m

    def apply_to_B(self, B: np.ndarray) -> np.ndarray:
        """B S: column j of B scaled by r/k if j is in I, else zeroed.

        Parameters
        ----------
        B : ndarray, shape (m, r)

        Returns
        -------
        ndarray, shape (m, r)
        """
        return B * self.diagonal()[None, :]

    def apply_to_A(self, A: np.ndarray) -> np.ndarray:
        """S A: row j of A scaled by r/k if j is in I, else zeroed.

        Parameters
        ----------
        A : ndarray, shape (r, n)

        Returns
        -------
        ndarray, shape (r, n)
        """
        return self.diagonal()[:, None] * A

    def sketched_product(self, B: np.ndarray, A: np.ndarray) -> np.ndarray:
        """B S A = (r/k) B[:, I] A[I, :], computed from the k selected columns and rows only.

        Parameters
        ----------
        B : ndarray, shape (m, r)
        A : ndarray, shape (r, n)

        Returns
        -------
        ndarray, shape (m, n)
        """
        return self.scale * (B[:, self.indices] @ A[self.indices, :])


def sample_sketch(rank: int, k: int, rng: np.random.Generator) -> Sketch:
    """Draw I uniformly among the k-subsets of {0..rank-1} (no replacement).

    Parameters
    ----------
    rank : int
        The LoRA rank r (1 <= r <= MAX_RANK).
    k : int
        The sketch size, 1 <= k <= r.
    rng : numpy.random.Generator
        The stream to draw from (e.g. ``fslora_ref.seeding.stream(seed, ..., purpose="sketch")``).

    Returns
    -------
    Sketch
        With ``k`` sorted indices.

    Examples
    --------
    >>> import numpy as np
    >>> from fslora_ref import sample_sketch
    >>> S = sample_sketch(8, 3, np.random.default_rng(0))
    >>> S.k, S.scale == 8 / 3, len(set(S.indices.tolist()))
    (3, True, 3)
    """
    rank = check_int("rank", rank, low=1, high=MAX_RANK)
    k = check_int("k", k, low=1, high=rank)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (e.g. fslora_ref.seeding.stream(...)), got {rng!r}")
    indices = rng.choice(rank, size=k, replace=False).astype(np.int64, copy=False)
    indices.sort()
    return _valid_sketch(rank, indices)


def _valid_sketch(rank: int, indices: np.ndarray) -> Sketch:
    """A Sketch of indices known to be valid (sorted, distinct int64 in [0, rank)), without
    ``Sketch.__post_init__``'s checks: sample_sketch's draws are valid by construction, and it runs
    once per client, layer and round."""
    sketch = object.__new__(Sketch)
    object.__setattr__(sketch, "rank", rank)
    object.__setattr__(sketch, "indices", indices)
    return sketch


def sketch_moments(rank: int, k: int) -> dict:
    """Closed-form moments of diag(S) (docs/spec.md §2).

    Parameters
    ----------
    rank : int
        The LoRA rank r.
    k : int
        The sketch size, 1 <= k <= r.

    Returns
    -------
    dict
        ``"mean"``: E[S_jj] (= 1, S is unbiased); ``"second"``: E[S_jj^2] = r/k; ``"cross"``:
        E[S_ii S_jj] for i != j; ``"c_k"``: (r - k) / (k (r - 1)), 0 when k = r.

    Examples
    --------
    >>> from fslora_ref import sketch_moments
    >>> sketch_moments(4, 2)
    {'mean': 1.0, 'second': 2.0, 'cross': 0.6666666666666666, 'c_k': 0.3333333333333333}
    """
    rank = check_int("rank", rank, low=1, high=MAX_RANK)
    k = check_int("k", k, low=1, high=rank)
    c_k = 0.0 if k == rank else (rank - k) / (k * (rank - 1))
    cross = 1.0 if rank == 1 else rank * (k - 1) / (k * (rank - 1))
    return {"mean": 1.0, "second": rank / k, "cross": cross, "c_k": c_k}
