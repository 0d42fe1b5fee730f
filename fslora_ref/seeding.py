"""Deterministic random streams keyed by (round, client, layer, purpose).

Every random draw of a run comes from ``stream(seed, ...)``: a child of one
``numpy.random.SeedSequence(seed)`` selected by its spawn key. The same key always gives
the same generator, independent of how many other streams were used before, so rounds can
be replayed, resumed or run in any order with bit-identical results.
"""
from __future__ import annotations

import numpy as np

from .validation import check_int

# Purposes name independent streams that share a (round, client, layer) key.
PURPOSES = {"sketch": 0, "batch": 1, "init": 2, "participation": 3, "budget": 4, "problem": 5, "eval": 6}

SERVER = -1  # client id for server-side draws (participation, budgets)
ALL_LAYERS = -1


def stream(seed: int, *, round: int, client: int, layer: int = ALL_LAYERS, purpose: str) -> np.random.Generator:
    """The generator for one (round, client, layer, purpose) key of run ``seed``.

    Parameters
    ----------
    seed : int
        The run's seed (>= 0).
    round : int
        The round index (>= 0), or -1 for draws made before the first round.
    client : int
        The client index, or ``SERVER`` (-1) for server-side draws.
    layer : int, default ALL_LAYERS
        The layer index, or ``ALL_LAYERS`` (-1) for a draw shared by all layers.
    purpose : str
        One of ``PURPOSES`` (``"sketch"``, ``"batch"``, ``"init"``, ...): independent streams
        for the same key.

    Returns
    -------
    numpy.random.Generator
        A PCG64 generator seeded by ``SeedSequence(seed, spawn_key=...)`` of the key: the same key
        always gives the same draws.

    Raises
    ------
    ValueError, TypeError
        If an id is not an integer >= -1 (``seed`` >= 0) or ``purpose`` is unknown.

    Examples
    --------
    >>> from fslora_ref import stream
    >>> a = stream(7, round=3, client=1, purpose="sketch").integers(1000, size=3)
    >>> b = stream(7, round=3, client=1, purpose="sketch").integers(1000, size=3)
    >>> bool((a == b).all())
    True
    """
    seed = check_int("seed", seed, low=0)
    round = check_int("round", round, low=-1)   # round=1.7 must not silently be round 1
    client = check_int("client", client, low=-1)
    layer = check_int("layer", layer, low=-1)
    code = PURPOSES.get(purpose) if isinstance(purpose, str) else None
    if code is None:
        raise ValueError(f"purpose must be one of {sorted(PURPOSES)}, got {purpose!r}")
    # spawn keys must be non-negative; shift the sentinel ids (-1) to 0 and real ids up by one.
    key = (round + 1, client + 1, layer + 1, code)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))
