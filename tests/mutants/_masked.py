"""A full-size masked client (Algorithm 1 as written) with separate masks, for mutants that
need one: forward coefficient s * coeff_scale on ``active``, B moves on ``b_cols``, A on ``a_rows``."""
from __future__ import annotations

import numpy as np

from fslora_ref.client import local_train
from fslora_ref.conformance.protocol import OracleProblem
from fslora_ref.conformance.reference import SGDW
from fslora_ref.lora import LayerFactors


def masked_client_update(task, i, active, b_cols, a_rows, coeff_scale, optimizer=None) -> list:
    """Full-size deltas [(dB: (m, r), dA: (r, n))] of client i after H masked steps."""
    r = task.rank
    factors, masks = [], []
    for (B, A), act, bc, ar in zip(task.layers, active, b_cols, a_rows):
        coeff = np.zeros(r)
        coeff[act] = task.lora_scaling * coeff_scale
        factors.append(LayerFactors(np.asarray(B, float).copy(), np.asarray(A, float).copy(), coeff))
        mb, ma = np.zeros(r, bool), np.zeros(r, bool)
        mb[bc], ma[ar] = True, True
        masks.append((mb, ma))
    trained, _ = local_train(OracleProblem(task.base_weights, task.oracles), i, factors, steps=task.local_steps,
                             optimizer=optimizer or SGDW(task.lr, task.weight_decay), rng=None, masks=masks)
    return [(B - f.B, A - f.A) for (B, A), f in zip(trained, factors)]


def mean_of_full_deltas(task, full_deltas) -> list:
    """X + (1/N) sum_i dX_i for full-size deltas [client][layer] = (dB, dA)."""
    N = len(full_deltas)
    return [(np.asarray(B, float) + sum(d[l][0] for d in full_deltas) / N,
             np.asarray(A, float) + sum(d[l][1] for d in full_deltas) / N) for l, (B, A) in enumerate(task.layers)]


def client_rng(task, i, *extra) -> np.random.Generator:
    """A generator keyed by (seed, round, client identity, extra...)."""
    return np.random.default_rng([task.seed, task.round_index, int(task.client_ids[i]), *extra])
