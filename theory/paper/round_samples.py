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
    """Flatten factors to one vector: ``[vec B; vec A]`` per layer, concatenated.

    Parameters
    ----------
    layers : list of (ndarray, ndarray)
        ``[(B: (m, r), A: (r, n))]`` per layer.

    Returns
    -------
    ndarray, shape (D,)
    """
    return np.concatenate([np.concatenate([np.ravel(B), np.ravel(A)]) for B, A in layers])


def round_changes(runner, problem, layers, config, rounds: int) -> np.ndarray:
    """The changes of ``rounds`` independent rounds of the implementation, all run from the same point.

    Row t is ``flat(round t from layers) - flat(layers)`` with round index t, so the implementation's
    draws are independent across rows. Cached per (runner, problem, point, config, rounds).

    Parameters
    ----------
    runner : round runner
        The implementation under test (:class:`theory.implementations.AlgorithmRunner`,
        :class:`theory.implementations.ProtocolRunner` or any object with ``run``).
    problem : fslora_ref.problems.Problem
        The problem.
    layers : list of (ndarray, ndarray)
        The start point ``[(B: (m, r), A: (r, n))]``.
    config : fslora_ref.config.FedConfig
        The run's configuration.
    rounds : int
        The number of rounds M.

    Returns
    -------
    ndarray, shape (M, D)
    """
    cache = _REFERENCE if runner.is_reference else runner.__dict__.setdefault("cache", {})
    key = ("round_changes", problem.name, problem.n_clients, flat(layers).tobytes(), config, rounds)
    if key not in cache:
        start = flat(layers)
        cache[key] = np.array([flat(runner.run(problem, config, layers, t)) - start for t in range(rounds)])
    return cache[key]
