"""HetLoRA (Cho et al.) as compared in the paper: client i receives the *first* k_i columns
of B and rows of A (truncation, no rescaling), trains them, and the server averages the
zero-padded client matrices over the participants.

Averaging zero-padded *matrices* shrinks coordinate j by the fraction of clients whose budget
does not reach j; that is HetLoRA's plain-averaging behaviour (its own norm-weighted
aggregation and self-pruning are not part of the paper's comparison).
"""
from __future__ import annotations

import numpy as np

from ..lora import LayerFactors
from .protocol import Algorithm, ClientPlan, ServerState, lora_floats


class HetLoRA(Algorithm):
    name = "hetlora"

    def configure_round(self, state, problem, config, round_index, participants):
        s = config.lora_scaling
        plans = []
        for i in participants:
            k = config.budgets[i]
            factors = [LayerFactors(B[:, :k].copy(), A[:k, :].copy(), s * np.ones(k)) for B, A in state.layers]
            plans.append(ClientPlan(i, factors, [np.arange(k)] * len(state.layers),
                                    download_floats=lora_floats(state.layers, [k] * len(state.layers)),
                                    broadcast_floats=lora_floats(state.layers, [config.rank] * len(state.layers))))
        return plans

    def aggregate(self, state, plans, uploads, config):
        new_layers = []
        for l, (B, A) in enumerate(state.layers):
            B_sum, A_sum = np.zeros_like(B), np.zeros_like(A)
            for up in uploads:
                Bi, Ai = up.trained[l]
                B_sum[:, :Bi.shape[1]] += Bi
                A_sum[:Ai.shape[0], :] += Ai
            new_layers.append((B_sum / len(uploads), A_sum / len(uploads)))
        return ServerState(new_layers, dict(state.extra))
