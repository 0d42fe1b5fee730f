"""The teaching pictures of notebooks 00 and 07, in the house style (plotstyle.py).

Kept out of the notebooks so their cells show the idea, not the plotting. Every function draws on
axes it is given or returns a new figure; none computes anything the notebook asserts.
"""
from __future__ import annotations

import numpy as np

import plotstyle as ps


def index_grid(ax, rank: int, index_sets, labels=None, title=None, clients=None) -> None:
    """One row per client: the rank indices j = 0..r-1, coloured where client i's sketch kept j.

    index_sets: [array of kept indices] per row; clients: the client of each row (default 0, 1, ...),
    which sets its colour; labels: row labels (default "client i (k=..)").
    """
    clients = list(range(len(index_sets))) if clients is None else list(clients)
    from matplotlib.patches import Rectangle
    n = len(index_sets)
    for i, idx in enumerate(index_sets):
        for j in range(rank):
            kept = j in set(np.asarray(idx).tolist())
            ax.add_patch(Rectangle((j, n - 1 - i), 0.92, 0.85, color=ps.client_color(clients[i]) if kept else ps.DROPPED))
    ax.set_xlim(-0.1, rank)
    ax.set_ylim(-0.1, n)
    ax.set_xticks(np.arange(rank) + 0.46, [str(j) for j in range(rank)])
    labels = labels or [f"client {c} (k={len(idx)})" for c, idx in zip(clients, index_sets)]
    ax.set_yticks(np.arange(n) + 0.42, labels[::-1])
    ax.set_xlabel("rank index j (a column of B, a row of A)")
    ax.grid(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    if title:
        ax.set_title(title)


def column_changes(ax, per_client, n_clients: int, title=None) -> None:
    """Stacked bars: how much each client moved column j of B (the norm of its change), divided by N
    as the server divides it; a column no client kept has no bar."""
    per_client = np.asarray(per_client)          # (clients, r) column-change norms
    rank = per_client.shape[1]
    bottom = np.zeros(rank)
    for i, row in enumerate(per_client):
        ax.bar(np.arange(rank), row / n_clients, bottom=bottom, color=ps.client_color(i), width=0.8,
               label=f"client {i} / N")
        bottom += row / n_clients
    ax.set_xticks(np.arange(rank))
    ax.set_xlabel("rank index j")
    ax.set_ylabel("||client's change of column j|| / N")
    ps.legend(ax, outside=True)
    if title:
        ax.set_title(title)


def matrix(ax, M, title=None, xlabel=None, ylabel=None, lim=None) -> None:
    """A matrix on the diverging colour map, symmetric around zero."""
    lim = lim or (float(np.max(np.abs(M))) or 1.0)
    ax.imshow(M, cmap=ps.DIVERGING, vmin=-lim, vmax=lim)
    ax.grid(False)
    if title:
        ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)


def block_picture(B, A, indices, scale: float):
    """B with the kept columns, A with the kept rows, and the client's product (r/k) B_I A_I."""
    fig, axes = ps.figure(3, size=(9.5, 3.2), gridspec_kw={"width_ratios": [B.shape[1], A.shape[1], A.shape[1]]})
    keep_B = np.zeros_like(B)
    keep_B[:, indices] = B[:, indices]
    keep_A = np.zeros_like(A)
    keep_A[indices, :] = A[indices, :]
    lim = float(max(np.abs(B).max(), np.abs(A).max()))
    matrix(axes[0], keep_B, "B: the client gets columns I", "rank index j", "input index", lim)
    matrix(axes[1], keep_A, "A: and the same rows I", "output index", "rank index j", lim)
    matrix(axes[2], scale * B[:, indices] @ A[indices, :], f"its update path (r/k) B_I A_I, r/k = {scale:.3g}",
           "output index", "input index")
    return fig


def bias_bars(ax, with_scale: float, without_scale: float, k: int, rank: int) -> None:
    """||E_S[B S A] - B A|| / ||B A|| with and without the r/k scale."""
    bars = ax.bar([0, 1], [with_scale, without_scale], color=[ps.SELECTED, ps.DROPPED], edgecolor="black", width=0.6)
    ax.bar_label(bars, labels=[f"{v:.2g}" for v in (with_scale, without_scale)], padding=2)
    ax.set_xticks([0, 1], ["with r/k", "without r/k"])
    ax.axhline(1 - k / rank, color="black", lw=0.8, ls=":")
    ax.annotate(f"1 - k/r = {1 - k / rank:.2f}", (-0.35, 1 - k / rank), xytext=(0, 4), textcoords="offset points",
                ha="left", va="bottom")
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("||E[B S A] - B A|| / ||B A||")
    ax.set_title("bias of the model the clients train")
