"""The figures of notebook 05 (FSLoRA on a real language model), in the house style (plotstyle.py).

Clients keep their colour (``ps.client_color``) in every panel; FSLoRA and FedIT are drawn in their
algorithm colours. Every function draws what it is given and returns the figure; none computes
anything the notebook asserts.
"""
from __future__ import annotations

import numpy as np

import plotstyle as ps


def training(mix, families, budgets, rank, client_loss, held, title):
    """Client data mix (left), each client's local loss (middle), the global model's held-out loss (right).

    Parameters
    ----------
    mix : (N, F) array
        Training examples per client and family.
    families : sequence of str
    budgets : (N,) sequence of int
    rank : int
    client_loss : (T, N) array
        Mean local loss per round and client.
    held : (T + 1,) array
        Held-out loss of the global model, before training and after each round.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    n_clients, rounds = len(budgets), len(client_loss)
    fig, (ax0, ax1, ax2) = ps.figure(3, size=(10, 4.0))
    left = np.zeros(n_clients)
    for j, fam in enumerate(families):
        ax0.barh(np.arange(n_clients), mix[:, j], left=left, color=ps.series_color(j), label=fam)
        left += mix[:, j]
    ax0.set_yticks(np.arange(n_clients), [f"client {i}\n(k = {k})" for i, k in enumerate(budgets)])
    ax0.invert_yaxis()
    ax0.set_xlabel("examples per family")
    ax0.set_title("Non-IID data (Dirichlet 0.5)", fontsize=10)
    ps.legend(ax0, outside=True, ncol=2, fontsize=8)
    cl = np.asarray(client_loss)
    for i in range(n_clients):
        ax1.plot(np.arange(1, rounds + 1), cl[:, i], "o-", ms=3, color=ps.client_color(i),
                 label=f"client {i}, k/r = {budgets[i] / rank:g}")
    ax1.set_xlabel(ps.ROUND_LABEL)
    ax1.set_ylabel("local loss (nats / answer token)")
    ax1.set_title("Each client's local loss", fontsize=10)
    ps.legend(ax1, outside=True, ncol=2, fontsize=8)
    ax2.plot(np.arange(rounds + 1), held, ms=4, **{**ps.algo("fslora"), "marker": "s"})
    ax2.set_xlabel(ps.ROUND_LABEL)
    ax2.set_ylabel("held-out cross-entropy (nats / token)")
    ax2.set_title("Global model (FSLoRA)", fontsize=10)
    fig.suptitle(title, fontsize=10)
    return fig


def memory_upload(budgets, upload, memory_mb, rank, fedit_upload, fedit_memory_mb, title):
    """Upload per round and trainable state per client, FSLoRA's clients against a FedIT client.

    Parameters
    ----------
    budgets : (N,) array
    upload : (N,) array
        Floats per round.
    memory_mb : (N,) array
    rank : int
    fedit_upload : int
    fedit_memory_mb : float
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Patch
    labels = [f"client {i}\nk = {k}" for i, k in enumerate(budgets)] + [f"FedIT\nk = r = {rank}"]
    colors = [ps.algo("fslora")["color"]] * len(budgets) + [ps.algo("fedit")["color"]]
    fig, (ax1, ax2) = ps.figure(2, size=(10, 3.8))
    ax1.bar(labels, list(np.asarray(upload) / 1e3) + [fedit_upload / 1e3], color=colors)
    ax1.set_ylabel("upload per round (thousands of floats)")
    ax1.set_title("Upload per client and round", fontsize=10)
    ax2.bar(labels, list(memory_mb) + [fedit_memory_mb], color=colors)
    ax2.set_ylabel("trainable state (MB, float32)")
    ax2.set_title("Memory: params + grads + AdamW moments", fontsize=10)
    handles = [Patch(color=ps.algo("fslora")["color"], label="FSLoRA (rank-k_i block)"),
               Patch(color=ps.algo("fedit")["color"], label="FedIT (full rank r)")]
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(False, axis="x")
        ps.legend(ax, handles=handles, fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=10)
    return fig
