"""The changes X^{t+1} - X^t of M rounds run from one fixed point, shared by the round-law claims.

``alg1.round_unbiased`` (the mean) and ``alg1.round_variance`` (the covariance) read the same rounds:
they are computed once per (runner, problem, point, config, rounds) and cached like
``theory.experiment.run_seeds`` caches runs (the reference's in a module dict, an implementation's in
its runner's ``cache``).
"""
from __future__ import annotations

import numpy as np

_REFERENCE: dict = {}


def flat(layers) -> np.ndarray:
    """[(B, A)] as one vector [vec B; vec A] per layer, concatenated: (D,)."""
    return np.concatenate([np.concatenate([np.ravel(B), np.ravel(A)]) for B, A in layers])


def round_changes(runner, problem, layers, config, rounds: int) -> np.ndarray:
    """(rounds, D): flat(round t from ``layers``) - flat(layers) for t = 0..rounds-1 (round index t, so
    the implementation's draws are independent across rows)."""
    cache = _REFERENCE if runner.is_reference else runner.__dict__.setdefault("cache", {})
    key = ("round_changes", problem.name, problem.n_clients, flat(layers).tobytes(), config, rounds)
    if key not in cache:
        start = flat(layers)
        cache[key] = np.array([flat(runner.run(problem, config, layers, t)) - start for t in range(rounds)])
    return cache[key]
