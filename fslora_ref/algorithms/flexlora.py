"""FlexLoRA (Bai et al.): clients train rank-k_i pairs; the server averages the full products
Delta W_i = s B_i A_i weighted by client data size, and gives each client a rank-k_i
factorisation of the average by truncated SVD (B = U_k sqrt(Sigma_k) / sqrt(s),
A = sqrt(Sigma_k) V_k^T / sqrt(s)). Round 0 starts every client from the first k_i
components of the common LoRA initialisation.
"""
from __future__ import annotations

import numpy as np

from ..lora import LayerFactors
from .protocol import Algorithm, ClientPlan, ServerState, lora_floats


def truncated_factors(delta_W: np.ndarray, k: int, s: float, svd=None):
    """(B: (m, k), A: (k, n)) with s B A the best rank-k approximation of delta_W; when
    k > min(m, n) the components beyond min(m, n) are zero (the shapes stay k).
    svd: ``np.linalg.svd(delta_W, full_matrices=False)`` if already computed (one SVD serves
    every client's k)."""
    U, sigma, Vt = np.linalg.svd(delta_W, full_matrices=False) if svd is None else svd
    q = min(k, sigma.size)
    root = np.sqrt(sigma[:q] / s)
    B, A = np.zeros((delta_W.shape[0], k)), np.zeros((k, delta_W.shape[1]))
    B[:, :q] = U[:, :q] * root[None, :]
    A[:q, :] = root[:, None] * Vt[:q, :]
    return B, A


class FlexLoRA(Algorithm):
    name = "flexlora"
    has_trainable_factors = False   # the model is the averaged product; B, A are only its truncation

    def configure_round(self, state, problem, config, round_index, participants):
        s = config.lora_scaling
        products = state.extra.get("delta_W")
        svds = None if products is None else [np.linalg.svd(dW, full_matrices=False) for dW in products]
        plans = []
        for i in participants:
            k = config.budgets[i]
            if products is None:
                pairs = [(B[:, :k].copy(), A[:k, :].copy()) for B, A in state.layers]
            else:
                pairs = [truncated_factors(dW, k, s, svd) for dW, svd in zip(products, svds)]
            factors = [LayerFactors(B, A, s * np.ones(k)) for B, A in pairs]
            floats = lora_floats(state.layers, [k] * len(state.layers))
            plans.append(ClientPlan(i, factors, [np.arange(k)] * len(state.layers),
                                    download_floats=floats, broadcast_floats=floats))
        return plans

    def aggregate(self, state, plans, uploads, config):
        s = config.lora_scaling
        sizes = np.array([state.extra["client_sizes"][up.client] for up in uploads], dtype=float)
        weights = sizes / sizes.sum()
        products = [sum(w * s * (up.trained[l][0] @ up.trained[l][1]) for w, up in zip(weights, uploads))
                    for l in range(len(state.layers))]
        # the rank-r factors shown as the server's state are the SVD truncation at rank r
        layers = [truncated_factors(dW, config.rank, s) for dW in products]
        return ServerState(layers, dict(state.extra, delta_W=products))

    def init(self, problem, config):
        state = super().init(problem, config)
        state.extra["client_sizes"] = list(problem.client_sizes)
        return state

    def dense_update(self, state):
        return state.extra.get("delta_W")   # None before the first round: the model is W0 + s B A
