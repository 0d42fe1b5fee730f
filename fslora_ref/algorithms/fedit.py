"""FedIT (Zhang et al.): plain federated LoRA, for context (docs/spec.md §5). Every client trains the
full rank-r pair from the server's (budgets ignored); the server averages B and A separately, so
avg(B) avg(A) != avg(B A).

- weights: ``weighting="uniform"`` (1/|P|, the server step of Algorithm 1 at k_i = r: FSLoRA with
  every budget r is FedIT) or ``"data_size"`` (n_i / sum_P n_j: FLoRA's own code, ATP-1010/FederatedLLM
  ``fed_utils/model_aggregation.py``, ``FedAvg``, non-stacking branch, meant to compute
  sum_i p_i X_i; its assignment to the misspelt ``weighted_sindgle_weights`` keeps only
  p_0 X_0 of the first client, the defect ``fslora crosscheck --algorithm fedit`` names);
- server step: X + the weighted mean change, through the server optimiser (``apply_server_step``).
"""
from __future__ import annotations

import numpy as np

from .protocol import (Algorithm, ClientPlan, apply_server_step, client_weights, full_rank_factors, lora_floats,
                       scatter_mean)


class FedIT(Algorithm):
    """FedIT: every client trains the full rank-r pair; the server averages B and A separately.

    Parameters
    ----------
    weighting : {"uniform", "data_size"}, default "uniform"
        The participants' aggregation weights: ``1/|P|`` or ``n_i / sum_P n_j``.
    """

    name = "fedit"
    OPTIONS = {"weighting": ("uniform", "data_size")}

    def init(self, problem, config):
        state = super().init(problem, config)
        if self.options["weighting"] == "data_size":
            state.extra["client_sizes"] = list(problem.client_sizes)
        return state

    def configure_round(self, state, problem, config, round_index, participants):
        full = lora_floats(state.layers, [config.rank] * len(state.layers))
        everything = [np.arange(config.rank)] * len(state.layers)
        return [ClientPlan(i, full_rank_factors(state, config), everything,
                           download_floats=full, broadcast_floats=full) for i in participants]

    def aggregate(self, state, plans, uploads, config):
        if self.options["weighting"] == "uniform":
            return apply_server_step(state, scatter_mean(state, plans, uploads, config), config)
        weights = client_weights([state.extra["client_sizes"][up.client] for up in uploads], "data_size")
        mean = [(sum(w * up.deltas[l][0] for w, up in zip(weights, uploads)),
                 sum(w * up.deltas[l][1] for w, up in zip(weights, uploads))) for l in range(len(state.layers))]
        return apply_server_step(state, mean, config)
