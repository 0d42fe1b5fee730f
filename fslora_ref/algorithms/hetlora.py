"""HetLoRA (Cho et al., 2024) as the FSLoRA paper's experiments ran it (docs/spec.md §5).

Source of the default rules: wenzhifang/Federated-Sketching-LoRA-Implementation,
``src/LoRA_Zero_Padding.py`` (``fl_cmu_lora_train_het`` and ``delta_average``) and ``src/models.py``
(``add_adapter``):

- client start: the *first* k_i columns of B and rows of A (``fl_cmu_lora_train_het``:
  ``sp[:, :r_c]`` / ``sp[:r_c, :]``), no rescaling of the factors;
- client scaling: the client's PEFT adapter has rank k_i and ``use_rslora=True``, so its coefficient
  is alpha/sqrt(k_i) = s sqrt(r/k_i) with s = alpha/sqrt(r) the server's (``scaling="rslora"``);
  ``scaling="constant"`` uses s at every rank;
- what is aggregated: the zero-padded *change* server - client of each participant
  (``delta_average``: ``padded[:, :k] = server[:, :k] - client``), summed and divided by the number
  of participants (``norm_sum`` counts every participant, not only those reaching a coordinate);
- server step: that mean is the pseudo-gradient of the server optimiser (``server_opt.step`` with
  ``sp.grad = aggregate / norm_sum``), the same server step as FSLoRA (``apply_server_step``;
  with ``server_optimizer="none"``: X + mean zero-padded change). A coordinate no participant
  trained does not move: a round of untrained clients is a fixed point.

``aggregate="matrix"`` is the rule this project used before issue 20: the server averages the
zero-padded client *matrices* (no server optimiser), which shrinks coordinate j by the share of
participants whose budget does not reach j, even when nobody trains. Cho et al.'s own HetLoRA
(sparsity-weighted aggregation by the norm of each client's update, rank self-pruning) is a third
rule, not implemented: its code was not found, and the FSLoRA paper did not compare against it.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..lora import LayerFactors
from .protocol import (SCALINGS, Algorithm, ClientPlan, ServerState, apply_server_step, lora_floats,
                       rank_coefficient, scatter_mean)


class HetLoRA(Algorithm):
    """HetLoRA: client i trains the first k_i columns of B and rows of A; the server averages the
    zero-padded changes.

    Parameters
    ----------
    aggregate : {"delta", "matrix"}, default "delta"
        Average the zero-padded changes through the server step, or the zero-padded matrices.
    scaling : {"rslora", "constant"}, default "rslora"
        A rank-k_i adapter's coefficient: s sqrt(r / k_i) or s (see ``SCALINGS``).
    """

    name = "hetlora"
    OPTIONS = {"aggregate": ("delta", "matrix"), "scaling": SCALINGS}

    def configure_round(self, state, problem, config, round_index, participants):
        plans = []
        for i in participants:
            k = config.budgets[i]
            coeff = rank_coefficient(config, k, self.options["scaling"]) * np.ones(k)
            factors = [LayerFactors(B[:, :k].copy(), A[:k, :].copy(), coeff) for B, A in state.layers]
            plans.append(ClientPlan(i, factors, [np.arange(k)] * len(state.layers),
                                    download_floats=lora_floats(state.layers, [k] * len(state.layers)),
                                    broadcast_floats=lora_floats(state.layers, [config.rank] * len(state.layers))))
        return plans

    def aggregate(self, state, plans, uploads, config):
        if self.options["aggregate"] == "delta":
            # the change is read as trained - start (not up.deltas): the Flower app's HetLoRA
            # clients upload their trained factors, and start + change is the same arithmetic
            changes = [replace(up, deltas=[(B - f.B, A - f.A) for (B, A), f in zip(up.trained, plan.factors)])
                       for plan, up in zip(plans, uploads)]
            return apply_server_step(state, scatter_mean(state, plans, changes, config), config)
        return ServerState(average_padded_matrices(state, uploads), dict(state.extra))


def average_padded_matrices(state, uploads) -> list:
    """The mean over participants of the zero-padded trained factors (the "matrix" rule).

    Parameters
    ----------
    state : ServerState
        The server state (its factors' shapes).
    uploads : list of Upload
        The participants' uploads (their ``trained`` factors).

    Returns
    -------
    list of tuple of ndarray
        ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l).
    """
    new_layers = []
    for l, (B, A) in enumerate(state.layers):
        B_sum, A_sum = np.zeros_like(B), np.zeros_like(A)
        for up in uploads:
            Bi, Ai = up.trained[l]
            B_sum[:, :Bi.shape[1]] += Bi
            A_sum[:Ai.shape[0], :] += Ai
        new_layers.append((B_sum / len(uploads), A_sum / len(uploads)))
    return new_layers
