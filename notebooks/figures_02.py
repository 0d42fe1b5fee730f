"""The figures of notebook 02 (one round, and the baselines), in the house style (plotstyle.py).

The loss figure draws exactly like ``fslora simulate``'s simulate.png (same names, colours, axes).
Every function draws what it is given and returns the figure; none computes anything the notebook
asserts.
"""
from __future__ import annotations

import numpy as np

import plotstyle as ps


def round_trace(panels, t, n_clients):
    """|ΔB| (top row) and |ΔA| (bottom row) per client after scattering, and the server's average.

    Parameters
    ----------
    panels : list of (str, (dB: (m, r), dA: (r, n)))
        Title and scattered change per column.
    t : int
        The round.
    n_clients : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    m, r = panels[0][1][0].shape
    fig, axes = ps.figure(len(panels), 2, size=(10, 5.2), gridspec_kw={"height_ratios": [m, r]})
    vmax = max(float(np.max(np.abs(d))) for _, pair in panels for d in pair)
    for col, (title, (dB, dA)) in enumerate(panels):
        for row, (D, what) in enumerate(((dB, "|ΔB|"), (dA, "|ΔA|"))):
            ax = axes[row, col]
            im = ax.imshow(np.ma.masked_equal(np.abs(D), 0.0), cmap=ps.SEQUENTIAL, vmin=0, vmax=vmax)
            ax.set_title(f"{what}: {title}", fontsize=8)
            ax.grid(False)
            ax.set_xlabel("rank index j" if row == 0 else "output index", fontsize=8)
            if col == 0:
                ax.set_ylabel("input index" if row == 0 else "rank index j", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.7, label="|change| in one round (white: exactly 0)")
    fig.suptitle(f"One FSLoRA round (t = {t}): each client moves only its k columns of B and k rows of A; "
                 f"the server divides by N = {n_clients}", fontsize=10)
    return fig


def loss_curves(results, title):
    """Loss against rounds and against cumulative upload, one line per algorithm in its style.

    Parameters
    ----------
    results : dict
        ``{algorithm: History}`` (``"loss"``, ``"upload_floats"``).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (ax1, ax2) = ps.figure(2)
    for name, h in results.items():
        ax1.plot(np.arange(len(h["loss"])), h["loss"], **ps.algo(name))
        ax2.plot(h["upload_floats"], h["loss"], **ps.algo(name))
    ps.loss_axes(ax1, x="round")
    ps.loss_axes(ax2, x="upload")
    ax1.set_title("loss vs round")
    ax2.set_title("loss vs communication")
    ps.legend(ax1)
    fig.suptitle(title, fontsize=10)
    return fig


def client_memory(results, budgets, rank, title):
    """Peak trainable state per algorithm, grouped by the clients' budget (bars in the algorithms' colours).

    Parameters
    ----------
    results : dict
        ``{algorithm: History}`` (``peak_client_memory`` per client).
    budgets : (N,) array
        k_i per client.
    rank : int
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    budgets = np.asarray(budgets)
    levels = sorted(set(budgets.tolist()))
    fig, ax = ps.figure(size=(8, 4))
    width = 0.8 / len(results)
    for a, (name, h) in enumerate(results.items()):
        peak = np.asarray(h.peak_client_memory)
        vals = [peak[budgets == k].max() for k in levels]
        ax.bar(np.arange(len(levels)) + (a - (len(results) - 1) / 2) * width, vals, width, **ps.bar(name))
    ax.set_xticks(np.arange(len(levels)), [f"k_i = {k}\n(k_i/r = {k / rank:g})" for k in levels])
    ax.set_xlabel("client budget")
    ax.set_ylabel("peak client trainable state (floats)")
    ax.set_title(title)
    ps.legend(ax, right=True)
    return fig
