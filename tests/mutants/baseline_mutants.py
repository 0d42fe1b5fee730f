"""Realistic defects of the baselines, each breaking one invariant of tests/core/test_invariants.py.

Each class keeps its reference parent's declared options (so a test that reads ``options`` expects
the declared rule) and changes one rule, as a bug in a third party's baseline would.
"""
from __future__ import annotations

import numpy as np

from fslora_ref.algorithms import FedIT, FlexLoRA, FLoRA, FSLoRA, HetLoRA
from fslora_ref.algorithms.protocol import ServerState, apply_server_step, client_weights
from fslora_ref.lora import dense_update


class FSLoRAAveragesBlocks(FSLoRA):
    """Averages the zero-filled trained *blocks* over N instead of adding the mean change."""

    def aggregate(self, state, plans, uploads, config):
        layers = []
        for l, (B, A) in enumerate(state.layers):
            B_new, A_new = np.zeros_like(B), np.zeros_like(A)
            for plan, up in zip(plans, uploads):
                I = plan.indices[l]
                B_new[:, I] += up.trained[l][0] / len(uploads)
                A_new[I, :] += up.trained[l][1] / len(uploads)
            layers.append((B_new, A_new))
        return ServerState(layers, dict(state.extra))


class FedITKeepsFirstClient(FedIT):
    """FLoRA's FedIT path (ATP-1010/FederatedLLM ``FedAvg``): the sum is assigned to the misspelt
    ``weighted_sindgle_weights``, so the server keeps p_0 X_0 of the first client only."""

    def aggregate(self, state, plans, uploads, config):
        sizes = [state.extra.get("client_sizes", [1] * config.n_clients)[up.client] for up in uploads]
        p0 = client_weights(sizes, self.options["weighting"])[0]
        return ServerState([(p0 * B, p0 * A) for B, A in uploads[0].trained], dict(state.extra))


class HetLoRAAveragesMatrices(HetLoRA):
    """Declares the delta rule but averages the zero-padded matrices (the pre-issue-20 reference)."""

    def aggregate(self, state, plans, uploads, config):
        return HetLoRA(aggregate="matrix", scaling=self.options["scaling"]).aggregate(state, plans, uploads, config)


class HetLoRASumsChanges(HetLoRA):
    """Adds the participants' changes without dividing by their number."""

    def aggregate(self, state, plans, uploads, config):
        total = [(np.zeros_like(B), np.zeros_like(A)) for B, A in state.layers]
        for plan, up in zip(plans, uploads):
            for l, ((Bi, Ai), f) in enumerate(zip(up.trained, plan.factors)):
                k = Bi.shape[1]
                total[l][0][:, :k] += Bi - f.B
                total[l][1][:k, :] += Ai - f.A
        return apply_server_step(state, total, config)


class FlexLoRAWeightsBySize(FlexLoRA):
    """Declares uniform weights but weights the products by client data size (Bai et al.'s rule)."""

    def aggregate(self, state, plans, uploads, config):
        inner = FlexLoRA(weighting="data_size", split=self.options["split"], scaling=self.options["scaling"])
        return inner.aggregate(state, plans, uploads, config)


class FLoRAForgetsReinit(FLoRA):
    """Merges the stack but lets each client continue from the pair it trained last round instead
    of a fresh one, so last round's update is counted again."""

    def configure_round(self, state, problem, config, round_index, participants):
        plans = super().configure_round(state, problem, config, round_index, participants)
        last = state.extra.get("last_trained", {})
        for p in plans:
            if p.client in last:
                p.factors = [f._replace(B=B.copy(), A=A.copy()) for f, (B, A) in zip(p.factors, last[p.client])]
        return plans

    def aggregate(self, state, plans, uploads, config):
        new = super().aggregate(state, plans, uploads, config)
        new.extra["last_trained"] = {up.client: up.trained for up in uploads}
        return new


class FLoRASumsStack(FLoRA):
    """Stacks the client pairs without the 1/N (or p_i) weights on A."""

    def aggregate(self, state, plans, uploads, config):
        new = super().aggregate(state, plans, uploads, config)
        K = sum(up.trained[0][0].shape[1] for up in uploads)
        c = config.lora_scaling * (np.sqrt(config.rank / K) if self.options["scaling"] == "rslora" else 1.0)
        new.extra["merged"] = [M + c * sum(dense_update(B, A, np.ones(B.shape[1])) for B, A in (up.trained[l] for up in uploads))
                               for l, M in enumerate(state.extra["merged"])]
        return new
