"""Deliberately broken variants of the reference, used to show the core tests have teeth.

Each mutant breaks exactly one property; tests/core/test_properties.py runs every property
check on the reference (must pass) and on the mutant built to break it (must fail).
"""
from __future__ import annotations

import numpy as np

from fslora_ref.algorithms import FSLoRA
from fslora_ref.algorithms.fslora import draw_round_sketches
from fslora_ref.algorithms.protocol import ClientPlan, apply_server_step, lora_floats
from fslora_ref.lora import LayerFactors, gather
from fslora_ref.sketch import Sketch


class SubmatrixWithoutScale(FSLoRA):
    """The submatrix client forgets the r/k scale (masked form unchanged)."""

    def configure_round(self, state, problem, config, round_index, participants):
        plans = super().configure_round(state, problem, config, round_index, participants)
        if config.form == "submatrix":
            for p in plans:
                p.factors = [f._replace(coeff=np.full_like(f.coeff, config.lora_scaling)) for f in p.factors]
        return plans


class SharedSketchAcrossLayers(FSLoRA):
    """Every layer reuses layer 0's sketch."""

    def configure_round(self, state, problem, config, round_index, participants):
        plans = super().configure_round(state, problem, config, round_index, participants)
        for p in plans:
            p.indices = [p.indices[0]] * len(p.indices)
            p.factors = [LayerFactors(*gather(B, A, Sketch(config.rank, p.indices[0])),
                                      config.lora_scaling * config.rank / len(p.indices[0]) * np.ones(len(p.indices[0])))
                         for B, A in state.layers]
        return plans


class LeakyUnselected(FSLoRA):
    """The server also nudges unselected coordinates (e.g. a decay applied to the whole B)."""

    def aggregate(self, state, plans, uploads, config):
        new = super().aggregate(state, plans, uploads, config)
        new.layers = [(0.999 * B, A) for B, A in new.layers]
        return new


class UploadsFullRank(FSLoRA):
    """The client uploads its whole rank-r factors (zeros included) instead of the k-block."""

    def client_update(self, plan, problem, config, round_index):
        up = super().client_update(plan, problem, config, round_index)
        up.upload_floats = lora_floats([(np.zeros((f.B.shape[0], config.rank)), np.zeros((config.rank, f.A.shape[1])))
                                        for f in plan.factors], [config.rank] * len(plan.factors))
        return up


class GlobalRandomState(FSLoRA):
    """Draws the sketch from numpy's global RNG: not reproducible from the seed."""

    def configure_round(self, state, problem, config, round_index, participants):
        plans = super().configure_round(state, problem, config, round_index, participants)
        for p in plans:
            idx = np.sort(np.random.choice(config.rank, config.budgets[p.client], replace=False))
            p.indices = [idx] * len(p.indices)
            p.factors = [LayerFactors(*gather(B, A, Sketch(config.rank, idx)), f.coeff)
                         for (B, A), f in zip(state.layers, p.factors)]
        return plans


class DividesBySelectors(FSLoRA):
    """Averages each coordinate over the clients that selected it instead of over N."""

    def aggregate(self, state, plans, uploads, config):
        totals, counts = [], []
        for B, A in state.layers:
            totals.append([np.zeros_like(B), np.zeros_like(A)])
            counts.append(np.zeros(B.shape[1]))
        for plan, up in zip(plans, uploads):
            for l, ((dB, dA), I) in enumerate(zip(up.deltas, plan.indices)):
                totals[l][0][:, I] += dB
                totals[l][1][I, :] += dA
                counts[l][I] += 1
        means = [(tB / np.maximum(c, 1)[None, :], tA / np.maximum(c, 1)[:, None]) for (tB, tA), c in zip(totals, counts)]
        return apply_server_step(state, means, config)


# -- public-API mutants for the fuzz test (the pre-issue-11 code, which coerced or overflowed) --
def coercing_budgets_from_ratios(rank, ratios, n_clients):
    """ZeroDivisionError on no ratios, OverflowError on huge ranks, a negative rank accepted."""
    if isinstance(n_clients, int) and n_clients > 1 << 20:  # the old code would build that list for minutes
        raise MemoryError(f"{n_clients} budgets")
    return [max(1, int(round(float(ratios[i % len(ratios)]) * rank))) for i in range(n_clients)]


def coercing_stream(seed, *, round, client, layer=-1, purpose):
    """round=1.7 silently becomes round 1."""
    key = (int(round) + 1, int(client) + 1, int(layer) + 1, 0)
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))


def coercing_sketch(rank, indices):
    """Sketch(8, [1.7, 2.2]) silently becomes indices [1, 2]."""
    return Sketch(rank, np.asarray(indices, dtype=float).astype(np.int64))
