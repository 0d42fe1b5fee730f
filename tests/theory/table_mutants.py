"""Defects from issue 9's table that no shipped mutant already covers, as Algorithm subclasses run
through the reference's real code path (the table's other rows reuse tests/mutants/first_k,
tests/mutants/independent_sets, tests/mutants/per_coordinate_mean and
tests/core/mutants.DividesBySelectors)."""
from __future__ import annotations

import numpy as np

from fslora_ref.algorithms import FSLoRA
from fslora_ref.algorithms.protocol import apply_server_step, scatter_mean
from tests.core.mutants import SubmatrixWithoutScale


class ServerDividesByNMinus1(FSLoRA):
    """The server divides the summed deltas by N - 1 instead of N (scatter_mean)."""

    def aggregate(self, state, plans, uploads, config):
        n = len(uploads)
        means = scatter_mean(state, plans, uploads, config)
        with np.errstate(divide="ignore", invalid="ignore"):   # N = 1: inf, and the run diverges as it would
            factor = np.float64(n) / (n - 1)
            return apply_server_step(state, [(dB * factor, dA * factor) for dB, dA in means], config)


class ScaleDroppedBothForms(SubmatrixWithoutScale):
    """FSLoRA.configure_round without the r/k scale in both client forms (submatrix and masked)."""

    def configure_round(self, state, problem, config, round_index, participants):
        plans = super().configure_round(state, problem, config, round_index, participants)
        if config.form == "masked":
            for p in plans:
                p.factors = [f._replace(coeff=config.lora_scaling * (f.coeff > 0)) for f in p.factors]
        return plans
