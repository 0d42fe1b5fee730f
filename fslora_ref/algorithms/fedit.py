"""FedIT: plain federated LoRA. Every client trains the full rank-r pair (budgets ignored);
the server averages B and A separately (so avg(B) avg(A) != avg(B A))."""
from __future__ import annotations

import numpy as np

from .protocol import Algorithm, ClientPlan, apply_server_step, full_rank_factors, lora_floats, scatter_mean


class FedIT(Algorithm):
    name = "fedit"

    def configure_round(self, state, problem, config, round_index, participants):
        full = lora_floats(state.layers, [config.rank] * len(state.layers))
        everything = [np.arange(config.rank)] * len(state.layers)
        return [ClientPlan(i, full_rank_factors(state, config), everything,
                           download_floats=full, broadcast_floats=full) for i in participants]

    def aggregate(self, state, plans, uploads, config):
        return apply_server_step(state, scatter_mean(state, plans, uploads, config), config)
