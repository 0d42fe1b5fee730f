"""ClientApp side of `fslora flower simulate`: the reference's client_update on this node's data.

The synthetic problem is a recipe (family, sizes, seed), so the node regenerates it and trains
only its own partition; nothing but the plan and the upload crosses the wire.
"""
from __future__ import annotations

import numpy as np

from fslora_ref.algorithms import get_algorithm
from fslora_ref.simulate import build


def prepare(job) -> None:
    """Check the SimulateJob can run here (raises the same one-line errors as `fslora simulate`)."""
    build(job)


def train(plan, meta, job):
    """(Upload of ``plan``, float type to send it in)."""
    problem, config, names = build(job)
    if meta["algorithm"] not in names:
        raise ValueError(f"plan for algorithm {meta['algorithm']!r}, not one of this job's {names}")
    upload = get_algorithm(meta["algorithm"]).client_update(plan, problem, config, int(meta["round"]))
    return upload, np.float64
