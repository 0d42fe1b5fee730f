"""FLoRA (Wang et al., 2024, stacking) as the FSLoRA paper's experiments ran it (docs/spec.md §5).

Sources: wenzhifang/Federated-Sketching-LoRA-Implementation ``src/LoRA_Stack.py``
(``fl_stack_lora_train_het``) and ``src/models.py`` (``add_adapter``) for the defaults; FLoRA's own
code, ATP-1010/FederatedLLM ``fed_utils/model_aggregation.py`` (``FedAvg``, stacking branch) and
``main.py`` (``fl_finetune``), for the options.

- client start: every round a *fresh* rank-k_i LoRA pair (random input side, zero output side)
  on top of the merged weight W0 + M (``LoRA_Stack.py`` builds a new adapter per client per round
  on ``frozen_model``, which is rebuilt from the merged checkpoint after each round);
- what is aggregated: the trained pairs, stacked B = [B_1 ... B_|P|], A = [w_1 A_1; ...; w_|P| A_|P|],
  so B A = sum_i w_i B_i A_i exactly;
- weights: 1/|P| (``LoRA_Stack.py``: ``client_params[lora_A] / args.server_batch``;
  ``weighting="uniform"``) or the data-size share p_i of the participants (FederatedLLM ``FedAvg``:
  ``weights_array = normalize(local_dataset_len, p=1)`` on the stacked A; ``weighting="data_size"``);
- scaling: the paper's code builds every adapter with ``use_rslora=True``, so a client's rank-k_i
  pair has coefficient s sqrt(r/k_i) and the stacked rank-K adapter (K = sum_P k_i) has
  s sqrt(r/K): the merged update is s sqrt(r/K) sum_i w_i B_i A_i = sum_i w_i sqrt(k_i/K) Delta W_i,
  *not* the average of the clients' updates (``scaling="rslora"``, the default). FLoRA's own code
  gives every adapter alpha/r = 2 (``lora_alpha = 2 * local_ranks[client_id]``; stacked
  ``lora_alpha * num_clients`` over ``lora_r * num_clients``), so its merge is the exact weighted
  average sum_i w_i Delta W_i (``scaling="constant"``);
- server step: merge s_K B A into the base weight (``merge_and_unload``) and re-initialise; no
  server optimiser. Clients download the stack, K (m + n) floats per layer.
"""
from __future__ import annotations

import numpy as np

from ..lora import LayerFactors, init_lora
from ..seeding import stream
from .protocol import (SCALINGS, Algorithm, ClientPlan, ServerState, client_weights, lora_floats,
                       rank_coefficient)


def fresh_pair(config, round_index: int, client: int, layer: int, m: int, n: int, k: int):
    """The fresh LoRA pair client ``client`` starts ``round_index`` from, drawn from its
    (round, client, layer) init stream.

    Parameters
    ----------
    config : FedConfig
        The run's configuration (its seed).
    round_index : int
        The round.
    client : int
        The client.
    layer : int
        The layer.
    m, n : int
        The layer's weight shape (m, n).
    k : int
        The client's rank.

    Returns
    -------
    B : ndarray, shape (m, k)
    A : ndarray, shape (k, n)
    """
    return init_lora(m, n, k, stream(config.seed, round=round_index, client=client, layer=layer, purpose="init"))


def stacked_merge(trained, weights, coeff: float) -> np.ndarray:
    """The stacked adapter's dense update, coeff * [B_1 ... B_P] [w_1 A_1; ...; w_P A_P].

    Parameters
    ----------
    trained : list of tuple of ndarray
        ``[(B_i, A_i)]`` over the participants, shapes (m, k_i) and (k_i, n).
    weights : array_like, shape (P,)
        The participants' weights w_i.
    coeff : float
        The stacked adapter's coefficient.

    Returns
    -------
    ndarray, shape (m, n)
    """
    B_stack = np.concatenate([B for B, _ in trained], axis=1)
    A_stack = np.concatenate([w * A for (_, A), w in zip(trained, weights)], axis=0)
    return coeff * (B_stack @ A_stack)


class FLoRA(Algorithm):
    """FLoRA: fresh rank-k_i pairs every round, stacked and merged into the base weight.

    Parameters
    ----------
    weighting : {"uniform", "data_size"}, default "uniform"
        The participants' aggregation weights: ``1/|P|`` or ``n_i / sum_P n_j``.
    scaling : {"rslora", "constant"}, default "rslora"
        A rank-k_i adapter's coefficient: s sqrt(r / k_i) or s (see ``SCALINGS``).
    """

    name = "flora"
    has_trainable_factors = False   # the model is W0 + the merged stacks; the server keeps no factors
    OPTIONS = {"weighting": ("uniform", "data_size"), "scaling": SCALINGS}

    def init(self, problem, config):
        state = super().init(problem, config)
        state.extra["merged"] = [np.zeros(shape) for shape in problem.layer_shapes]
        state.extra["stacked_rank"] = 0
        if self.options["weighting"] == "data_size":
            state.extra["client_sizes"] = list(problem.client_sizes)
        return state

    def configure_round(self, state, problem, config, round_index, participants):
        plans = []
        for i in participants:
            k = config.budgets[i]
            coeff = rank_coefficient(config, k, self.options["scaling"]) * np.ones(k)
            factors = [LayerFactors(*fresh_pair(config, round_index, i, l, m, n, k), coeff, state.extra["merged"][l])
                       for l, (m, n) in enumerate(problem.layer_shapes)]
            stacked = lora_floats(state.layers, [state.extra["stacked_rank"]] * len(state.layers))
            plans.append(ClientPlan(i, factors, [np.arange(k)] * len(state.layers),
                                    download_floats=stacked, broadcast_floats=stacked))
        return plans

    def aggregate(self, state, plans, uploads, config):
        stacked_rank = sum(up.trained[0][0].shape[1] for up in uploads)
        sizes = (state.extra["client_sizes"] if self.options["weighting"] == "data_size" else [1] * config.n_clients)
        weights = client_weights([sizes[up.client] for up in uploads], self.options["weighting"])
        coeff = rank_coefficient(config, stacked_rank, self.options["scaling"])
        merged = [M + stacked_merge([up.trained[l] for up in uploads], weights, coeff)
                  for l, M in enumerate(state.extra["merged"])]
        return ServerState(state.layers, dict(state.extra, merged=merged, stacked_rank=stacked_rank))

    def dense_update(self, state):
        return state.extra["merged"]

    def global_factors(self, state):
        return None
