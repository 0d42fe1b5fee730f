"""FlexLoRA (Bai et al., 2024) as the FSLoRA paper's experiments ran it (docs/spec.md §5).

Source of the default rules: wenzhifang/Federated-Sketching-LoRA-Implementation, ``src/LoRA_SVD.py``
(``weight_aggregation``, ``local_model_initialization``, ``fl_svd_lora_train_het``) and
``src/models.py`` (``add_adapter``, ``use_rslora=True``):

- what is aggregated: each participant's full product Delta W_i = c_i B_i A_i (``weight_aggregation``:
  ``(1/sqrt(r_c)) * B @ A``, i.e. the rsLoRA-scaled product up to the common alpha);
- weights: uniform, 1/|P| (``local_model_initialization``: ``param / num_client``;
  ``weighting="uniform"``); Bai et al. weight by client data size (``weighting="data_size"``);
- scaling: a rank-k adapter has coefficient c_k = s sqrt(r/k) (rsLoRA at the client's rank,
  ``scaling="rslora"``); ``scaling="constant"`` uses c_k = s;
- SVD split: client i starts the next round from the rank-k_i truncation U_k Sigma_k V_k^T of the
  average with the singular values on B: B = U_k Sigma_k / c_k, A = V_k^T (``fl_svd_lora_train_het``:
  ``B = U[:, :r_c] diag(S[:r_c]) sqrt(r_c)``, ``A = V[:r_c]``; ``split="on_B"``). ``split="balanced"``
  (this project's rule before issue 20) puts sqrt(Sigma_k / c_k) on each side. The split changes
  the next round's gradients, not the starting model;
- round 0: every client starts from a fresh LoRA initialisation (A = 0, so Delta W = 0); here the
  first k_i components of the common initialisation (same distribution);
- server step: none; the server's model is W0 + the weighted average of the Delta W_i (Bai et al.).
  The paper's code saves and evaluates the rank-r truncation of that average instead (its
  ``server_params``); this reference keeps the full average as the global model and shows the
  rank-r truncation as ``state.layers``. They differ only when the average has rank > r.

With learning rate 0 a round is not a fixed point: the new model is the weighted average of the
participants' rank-k_i truncations of the old one (tests/core/test_invariants.py checks that equality).
"""
from __future__ import annotations

import numpy as np

from ..lora import LayerFactors, dense_update
from ..validation import check_choice
from .protocol import SCALINGS, Algorithm, ClientPlan, ServerState, client_weights, lora_floats, rank_coefficient

SPLITS = ("on_B", "balanced")


def truncated_factors(delta_W: np.ndarray, k: int, s: float, svd=None, split: str = "balanced"):
    """The rank-k factors (B, A) with s B A the best rank-k approximation of delta_W.

    Parameters
    ----------
    delta_W : ndarray, shape (m, n)
        The dense update to factor.
    k : int
        The rank; when k > min(m, n) the components beyond min(m, n) are zero (the shapes stay k).
    s : float
        The coefficient the factors will be used with.
    svd : tuple of ndarray, optional
        ``np.linalg.svd(delta_W, full_matrices=False)`` if already computed (one SVD serves every
        client's k).
    split : {"balanced", "on_B"}, default "balanced"
        "balanced" puts sqrt(Sigma_k / s) on each factor; "on_B" puts Sigma_k / s on B and leaves
        A = V_k^T (orthonormal rows).

    Returns
    -------
    B : ndarray, shape (m, k)
    A : ndarray, shape (k, n)
    """
    check_choice("split", split, SPLITS)
    U, sigma, Vt = np.linalg.svd(delta_W, full_matrices=False) if svd is None else svd
    q = min(k, sigma.size)
    B, A = np.zeros((delta_W.shape[0], k)), np.zeros((k, delta_W.shape[1]))
    if split == "balanced":
        left = right = np.sqrt(sigma[:q] / s)
    else:
        left, right = sigma[:q] / s, np.ones(q)
    B[:, :q] = U[:, :q] * left[None, :]
    A[:q, :] = right[:, None] * Vt[:q, :]
    return B, A


class FlexLoRA(Algorithm):
    """FlexLoRA: the server averages the clients' products B_i A_i; each client restarts from the
    rank-k_i truncated SVD of the average.

    Parameters
    ----------
    weighting : {"uniform", "data_size"}, default "uniform"
        The participants' aggregation weights: ``1/|P|`` or ``n_i / sum_P n_j``.
    split : {"on_B", "balanced"}, default "on_B"
        Where the singular values go in the truncation (see :func:`truncated_factors`).
    scaling : {"rslora", "constant"}, default "rslora"
        A rank-k_i adapter's coefficient: s sqrt(r / k_i) or s (see ``SCALINGS``).
    """

    name = "flexlora"
    has_trainable_factors = False   # the model is the averaged product; B, A are only its truncation
    OPTIONS = {"weighting": ("uniform", "data_size"), "split": SPLITS, "scaling": SCALINGS}

    def configure_round(self, state, problem, config, round_index, participants):
        products = state.extra.get("delta_W")
        svds = None if products is None else [np.linalg.svd(dW, full_matrices=False) for dW in products]
        plans = []
        for i in participants:
            k = config.budgets[i]
            c = rank_coefficient(config, k, self.options["scaling"])
            if products is None:
                pairs = [(B[:, :k].copy(), A[:k, :].copy()) for B, A in state.layers]
            else:
                pairs = [truncated_factors(dW, k, c, svd, self.options["split"]) for dW, svd in zip(products, svds)]
            factors = [LayerFactors(B, A, c * np.ones(k)) for B, A in pairs]
            floats = lora_floats(state.layers, [k] * len(state.layers))
            plans.append(ClientPlan(i, factors, [np.arange(k)] * len(state.layers),
                                    download_floats=floats, broadcast_floats=floats))
        return plans

    def aggregate(self, state, plans, uploads, config):
        sizes = [state.extra["client_sizes"][up.client] for up in uploads]
        weights = client_weights(sizes, self.options["weighting"])
        products = [sum(w * dense_update(*up.trained[l], plan.factors[l].coeff)
                        for w, plan, up in zip(weights, plans, uploads))
                    for l in range(len(state.layers))]
        # the rank-r factors shown as the server's state are the SVD truncation at rank r
        layers = [truncated_factors(dW, config.rank, config.lora_scaling, split=self.options["split"])
                  for dW in products]
        return ServerState(layers, dict(state.extra, delta_W=products))

    def init(self, problem, config):
        state = super().init(problem, config)
        state.extra["client_sizes"] = list(problem.client_sizes)
        return state

    def dense_update(self, state):
        return state.extra.get("delta_W")   # None before the first round: the model is W0 + s B A
