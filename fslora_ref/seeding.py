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
    """The generator for one (round, client, layer, purpose) key of run ``seed``."""
    seed = check_int("seed", seed, low=0)
    ids = {"round": round, "client": client, "layer": layer}
    for name, value in ids.items():  # round=1.7 must not silently be round 1
        ids[name] = check_int(name, value, low=-1)
    if not isinstance(purpose, str) or purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {sorted(PURPOSES)}, got {purpose!r}")
    # spawn keys must be non-negative; shift the sentinel ids (-1) to 0 and real ids up by one.
    key = (ids["round"] + 1, ids["client"] + 1, ids["layer"] + 1, PURPOSES[purpose])
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))
