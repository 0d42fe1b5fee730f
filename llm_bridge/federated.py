"""The reference's server, torch clients in the middle.

``TorchClients(algorithm, layers, task)`` is an ``fslora_ref`` algorithm whose
``client_update`` trains on the torch model; ``init``, ``configure_round`` (FSLoRA's sketch
draws) and ``aggregate`` (scatter + average, server optimiser) are the reference's own, so
``fslora_ref.federation.run_round`` runs a bridge round unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fslora_ref.algorithms import get_algorithm
from fslora_ref.algorithms.flexlora import truncated_factors
from fslora_ref.lora import LayerFactors

from .client import train_client


@dataclass
class ModelShapes:
    """The part of a ``fslora_ref`` problem the server side reads: layer shapes (m_l, n_l),
    client data sizes (FlexLoRA's weights) and, lazily, the base weights.

    Parameters
    ----------
    layers : LoraLayers
        The model's LoRA layers.
    client_sizes : list of int
        The clients' numbers of training examples.
    """

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
    """Delegates everything to ``algorithm`` except ``client_update``, which trains on torch.

    Parameters
    ----------
    algorithm : Algorithm
        The reference algorithm (server side).
    layers : LoraLayers
        The model's LoRA layers.
    task : object
        The clients' data (``sample_batch`` / ``loss``).
    on_client : callable, optional
        Called with each Upload.
    """

    def __init__(self, algorithm, layers, task, on_client=None):
        self.inner, self.layers, self.task, self.on_client = algorithm, layers, task, on_client
        self.name = algorithm.name

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    def client_update(self, plan, problem, config, round_index):
        """Train one client on the torch model (:func:`llm_bridge.client.train_client`).

        Parameters
        ----------
        plan : ClientPlan
            What the client received.
        problem : ModelShapes
            Unused (the data are the task's).
        config : FedConfig
            The run's configuration.
        round_index : int
            The round.

        Returns
        -------
        Upload
        """
        upload = train_client(self.layers, self.task, plan, config, round_index)
        if self.on_client is not None:
            self.on_client(upload)
        return upload


def _algorithm(algorithm):
    """An Algorithm instance from an instance or its name (older callers pass ``algo.name``)."""
    return get_algorithm(algorithm) if isinstance(algorithm, str) else algorithm


def global_factors(algorithm, state, config, shapes) -> list:
    """The factors that make the model compute the server's global model.

    Parameters
    ----------
    algorithm : Algorithm or str
        An ``fslora_ref`` algorithm (or its name).
    state : ServerState
        The server state.
    config : FedConfig
        The run's configuration (rank r, scaling s).
    shapes : list of tuple of int
        ``[(m_l, n_l)]``.

    Returns
    -------
    list of LayerFactors
        Rank-r (B, A) with coefficient s, or zero factors plus the algorithm's dense update
        (its ``dense_update``: FlexLoRA's averaged product, FLoRA's merged stack).
    """
    algorithm = _algorithm(algorithm)
    s = config.lora_scaling
    coeff = s * np.ones(config.rank)
    dense = algorithm.dense_update(state)
    if dense is not None:
        return [LayerFactors(np.zeros((m, config.rank)), np.zeros((config.rank, n)), coeff, dW)
                for (m, n), dW in zip(shapes, dense)]
    return [LayerFactors(B, A, coeff) for B, A in state.layers]


def exportable_factors(algorithm, state, config) -> tuple:
    """Rank-r factors for a PEFT adapter.

    Parameters
    ----------
    algorithm : Algorithm or str
        An ``fslora_ref`` algorithm (or its name).
    state : ServerState
        The server state.
    config : FedConfig
        The run's configuration.

    Returns
    -------
    pairs : list of tuple of ndarray
        ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l): the server's factors, or, when the model
        is W0 + a dense update (FlexLoRA / FLoRA), that update's rank-r truncated SVD.
    exact : bool
        Whether the pairs reproduce the model exactly (for a dense update: its rank <= r).
    """
    dense = _algorithm(algorithm).dense_update(state)
    if dense is None:
        return [(B, A) for B, A in state.layers], True
    pairs = [truncated_factors(d, config.rank, config.lora_scaling) for d in dense]
    exact = all(np.linalg.matrix_rank(d) <= config.rank for d in dense)
    return pairs, exact
