"""Plain FedAvg of LoRA factors, written from scratch: the oracle for "k_i = r recovers FedAvg".

Deliberately shares no code with fslora_ref's algorithms (not FedIT, not scatter_mean, not
apply_server_step): only the problem's gradient over W is used, as any client would.
"""
from __future__ import annotations

import numpy as np


def fedavg_round(problem, layers, *, lr: float, local_steps: int, s: float) -> list:
    """One round of plain FedAvg on the LoRA factors, written independently of fslora_ref's algorithms.

    Every client takes ``local_steps`` full-batch gradient steps on ``f_i(W0 + s B A)`` (for both B and
    A) from ``layers``; the server returns the start plus the mean of the clients' changes.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        The federated problem (its ``base_weights`` W0 and ``loss_and_weight_grads`` are used).
    layers : list of (ndarray, ndarray)
        The round's starting factors ``[(B: (m, r), A: (r, n))]``, one pair per layer.
    lr : float
        The local learning rate.
    local_steps : int
        The number of local steps H.
    s : float
        The LoRA scale.

    Returns
    -------
    list of (ndarray, ndarray)
        The new factors ``[(B: (m, r), A: (r, n))]``.
    """
    N = problem.n_clients
    total = [(np.zeros_like(B), np.zeros_like(A)) for B, A in layers]
    for i in range(N):
        Bs = [np.array(B, dtype=float) for B, _ in layers]
        As = [np.array(A, dtype=float) for _, A in layers]
        for _ in range(local_steps):
            _, G = problem.loss_and_weight_grads(i, [W0 + s * B @ A for W0, B, A in zip(problem.base_weights, Bs, As)])
            Bs, As = [B - lr * s * g @ A.T for B, A, g in zip(Bs, As, G)], [A - lr * s * B.T @ g for B, A, g in zip(Bs, As, G)]
        total = [(tB + B - B0, tA + A - A0) for (tB, tA), B, A, (B0, A0) in zip(total, Bs, As, layers)]
    return [(B0 + tB / N, A0 + tA / N) for (B0, A0), (tB, tA) in zip(layers, total)]
