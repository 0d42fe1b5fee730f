"""The reference's server, torch clients in the middle.

``TorchClients(algorithm, layers, task)`` is an ``fslora_ref`` algorithm whose
``client_update`` trains on the torch model; ``init``, ``configure_round`` (FSLoRA's sketch
draws) and ``aggregate`` (scatter + average, server optimiser) are the reference's own, so
``fslora_ref.federation.run_round`` runs a bridge round unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fslora_ref.algorithms.flexlora import truncated_factors
from fslora_ref.lora import LayerFactors

from .client import train_client


@dataclass
class ModelShapes:
    """The part of a ``fslora_ref`` problem the server side reads: layer shapes (m_l, n_l),
    client data sizes (FlexLoRA's weights) and, lazily, the base weights."""

    layers: object          # LoraLayers
    client_sizes: list

    @property
    def layer_shapes(self) -> list:
        return self.layers.layer_shapes

    @property
    def n_clients(self) -> int:
        return len(self.client_sizes)

    @property
    def base_weights(self) -> list:
        return self.layers.base_weights()


class TorchClients:
    """Delegates everything to ``algorithm`` except ``client_update``, which trains on torch."""

    def __init__(self, algorithm, layers, task, on_client=None):
        self.inner, self.layers, self.task, self.on_client = algorithm, layers, task, on_client
        self.name = algorithm.name

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def client_update(self, plan, problem, config, round_index):
        upload = train_client(self.layers, self.task, plan, config, round_index)
        if self.on_client is not None:
            self.on_client(upload)
        return upload


def global_factors(algorithm_name: str, state, config, shapes) -> list:
    """[LayerFactors] that make the model compute the server's global model:
    rank-r (B, A) with coefficient s, plus the dense update for FlexLoRA / FLoRA."""
    s = config.lora_scaling
    coeff = s * np.ones(config.rank)
    if algorithm_name == "flexlora" and "delta_W" in state.extra:
        return [LayerFactors(np.zeros((m, config.rank)), np.zeros((config.rank, n)), coeff, dW)
                for (m, n), dW in zip(shapes, state.extra["delta_W"])]
    if algorithm_name == "flora":
        return [LayerFactors(np.zeros((m, config.rank)), np.zeros((config.rank, n)), coeff, M)
                for (m, n), M in zip(shapes, state.extra["merged"])]
    return [LayerFactors(B, A, coeff) for B, A in state.layers]


def exportable_factors(algorithm_name: str, state, config) -> tuple:
    """(rank-r [(B, A)], exact) for a PEFT adapter: the server's factors (exact), or for
    FlexLoRA / FLoRA the rank-r truncated SVD of the dense update (exact only if its rank <= r)."""
    if algorithm_name == "flexlora" and "delta_W" in state.extra:
        dense = state.extra["delta_W"]
    elif algorithm_name == "flora":
        dense = state.extra["merged"]
    else:
        return [(B, A) for B, A in state.layers], True
    pairs = [truncated_factors(d, config.rank, config.lora_scaling) for d in dense]
    exact = all(np.linalg.matrix_rank(d) <= config.rank for d in dense)
    return pairs, exact
