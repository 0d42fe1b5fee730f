"""FLoRA (Wang et al., stacking): each round every client trains a fresh rank-k_i LoRA pair
on top of the current merged weight; the server stacks them, B = [B_1 ... B_N],
A = [A_1; ...; A_N] with 1/N weights, so B A = (1/N) sum_i B_i A_i exactly, merges s B A into
the base weight, and re-initialises. Clients download the stacked pair: sum_j k_j (m + n).
"""
from __future__ import annotations

import numpy as np

from ..lora import LayerFactors, init_lora
from ..seeding import stream
from .protocol import Algorithm, ClientPlan, ServerState, lora_floats


class FLoRA(Algorithm):
    name = "flora"
    has_trainable_factors = False   # the model is W0 + the merged stacks; the server keeps no factors

    def init(self, problem, config):
        state = super().init(problem, config)
        state.extra["merged"] = [np.zeros(shape) for shape in problem.layer_shapes]
        state.extra["stacked_rank"] = 0
        return state

    def configure_round(self, state, problem, config, round_index, participants):
        s = config.lora_scaling
        plans = []
        for i in participants:
            k = config.budgets[i]
            factors = []
            for l, (m, n) in enumerate(problem.layer_shapes):
                B, A = init_lora(m, n, k, stream(config.seed, round=round_index, client=i, layer=l, purpose="init"))
                factors.append(LayerFactors(B, A, s * np.ones(k), state.extra["merged"][l]))
            stacked = lora_floats(state.layers, [state.extra["stacked_rank"]] * len(state.layers))
            plans.append(ClientPlan(i, factors, [np.arange(k)] * len(state.layers),
                                    download_floats=stacked, broadcast_floats=stacked))
        return plans

    def aggregate(self, state, plans, uploads, config):
        s = config.lora_scaling
        merged = []
        for l, M in enumerate(state.extra["merged"]):
            B_stack = np.concatenate([up.trained[l][0] for up in uploads], axis=1)
            A_stack = np.concatenate([up.trained[l][1] for up in uploads], axis=0) / len(uploads)
            merged.append(M + s * (B_stack @ A_stack))
        stacked_rank = sum(up.trained[0][0].shape[1] for up in uploads)
        return ServerState(state.layers, dict(state.extra, merged=merged, stacked_rank=stacked_rank))

    def dense_update(self, state):
        return state.extra["merged"]

    def global_factors(self, state):
        return None
