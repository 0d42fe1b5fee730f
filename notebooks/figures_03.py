"""The figures of notebook 03 (what FSLoRA minimises), in the house style (plotstyle.py).

A budget k keeps one colour in every figure of the notebook (``ps.series_color(k - 1)``); the
original objective f is drawn in black. Every function draws what it is given and returns the
figure; none computes anything the notebook asserts.
"""
from __future__ import annotations

import numpy as np

import plotstyle as ps


def k_color(k: int) -> str:
    """The colour of budget ``k`` in this notebook's figures.

    Parameters
    ----------
    k : int

    Returns
    -------
    str
    """
    return ps.series_color(k - 1)


def regulariser(alphas, f_ray, fS_ray, r, penalty_ratio, c):
    """Left: f and f^S along a ray; right: the enumerated penalty (normalised) against c_k.

    Parameters
    ----------
    alphas : (A,) array
    f_ray : (A,) array
        f along the ray.
    fS_ray : dict
        ``{k: (A,) array}`` f^S along the ray, for k < r.
    r : int
    penalty_ratio, c : dict
        ``{k: float}``: (f^S - f) / its k-independent factor, and c_k.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (ax1, ax2) = ps.figure(2)
    ax1.plot(alphas, f_ray, color=ps.BOUND, lw=2.4, label="f (original objective)")
    for k, values in fS_ray.items():
        ax1.plot(alphas, values, "--", color=k_color(k), label=f"f^S, k = {k} (k/r = {k / r:g})")
    ax1.set_xlabel("α  (the point α·X₁: both factors scaled)")
    ax1.set_ylabel("objective (mean squared error / 2)")
    ax1.set_title("f^S ≥ f: a penalty growing with the update")
    ps.legend(ax1, fontsize=8)
    kd = np.linspace(1, r, 100)
    ks = sorted(c)
    ax2.plot(kd / r, (r - kd) / (kd * (r - 1)), color=ps.BOUND, label="c_k = (r−k)/(k(r−1))")
    ax2.scatter([k / r for k in ks], [penalty_ratio[k] for k in ks], s=70, facecolors="none",
                edgecolors=[k_color(k) for k in ks], linewidths=1.6, zorder=3,
                label="enumerated (f^S − f), normalised")
    ax2.set_xlabel(f"sketching ratio k/r  (r = {r})")
    ax2.set_ylabel("penalty strength c_k")
    ax2.set_title("The rank-dropout penalty: c_k, zero at k = r")
    ps.legend(ax2, fontsize=8)
    return fig


def settling(traces, r):
    """‖∇f^S‖² and ‖∇f‖² along FSLoRA's runs, one colour per k.

    Parameters
    ----------
    traces : dict
        ``{k: {"round": [...], "gS2": [...], "gf2": [...]}}``.
    r : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (ax1, ax2) = ps.figure(2, sharey=True)
    for k, tr in traces.items():
        ax1.semilogy(tr["round"], tr["gS2"], color=k_color(k), label=f"k = {k} (k/r = {k / r:g})")
        ax2.semilogy(tr["round"], tr["gf2"], color=k_color(k), label=f"k = {k} (k/r = {k / r:g})")
    ax1.set_title("‖∇f^S(X^t)‖²: stationary for f^S …")
    ax1.set_ylim(1e-7, 10)
    ax1.text(0.98, 0.04, "k = r falls to 0 below the axis", transform=ax1.transAxes, ha="right", fontsize=8)
    ax2.set_title("… while ‖∇f(X^t)‖² stalls for 1 < k < r")
    for ax in (ax1, ax2):
        ax.set_xlabel(ps.ROUND_LABEL + "  (H = 1; γ halved every quarter)")
    ax1.set_ylabel("squared gradient norm (exact)")
    ps.legend(ax2, fontsize=8)
    return fig


def gap_vs_ratio(ratios, gap_stationary, gap_run, sv_opt, sv_by_k, r):
    """Left: excess loss over the minimiser of f against k/r; right: singular values of the update.

    Parameters
    ----------
    ratios, gap_stationary, gap_run : (K,) arrays
    sv_opt : (q,) array
        Singular values of the minimiser of f.
    sv_by_k : dict
        ``{k: (q,) array}`` at the stationary point of f^S, k < r.
    r : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, (ax1, ax2) = ps.figure(2)
    ax1.plot(ratios, gap_stationary, "o-", color=ps.BOUND, ms=7, label="f(X^S_k) − f*: stationary point of f^S")
    ax1.plot(ratios, gap_run, "x--", color=ps.algo("fslora")["color"], ms=9,
             label="f(X_T) − f*: FSLoRA (last 10% of rounds)")
    ax1.set_xlabel(f"sketching ratio k/r  (r = {r}, all clients at k)")
    ax1.set_ylabel("excess loss over the minimiser of f")
    ax1.set_title("The price of sketching vanishes as k/r → 1")
    ps.legend(ax1, fontsize=8)
    idx = np.arange(1, len(sv_opt) + 1)
    ax2.plot(idx, sv_opt, "-o", color=ps.BOUND, lw=2.4, label="minimiser of f (k = r)")
    for k, sv in sv_by_k.items():
        ax2.plot(idx, sv, "o--", color=k_color(k), label=f"stationary point of f^S, k = {k}")
    ax2.set_yscale("log")
    ax2.set_ylim(max(1e-6, float(np.min(sv_opt)) / 100), None)
    ax2.set_xticks(idx)
    ax2.text(0.02, 0.04, "lines leaving the axis: singular value 0", transform=ax2.transAxes, fontsize=8)
    ax2.set_xlabel("singular value index")
    ax2.set_ylabel("singular value of sBA")
    ax2.set_title("The penalty shrinks the learned update")
    ps.legend(ax2, fontsize=8)
    return fig
