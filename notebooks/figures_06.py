"""The figures of notebook 06 (our H = 1 bound), in the house style (plotstyle.py).

Conventions shared with ``fslora verify``'s ``ours`` PNG: the measured LHS in ``ps.MEASURED``, our
a-posteriori bound in ``ps.OURS``, its a-priori form in ``ps.OURS_PRIOR`` (dashed), Theorem 4.4 in
``ps.PAPER`` (dotted). Every function draws what it is given and returns the figure; none computes
anything the notebook asserts. Every figure is at most ``ps.MAX_WIDTH`` inches wide (a slide).
"""
from __future__ import annotations

import math

import numpy as np

import plotstyle as ps


def curvature(bound, at_points, secant, L_S, title):
    """The curvature along a run: certified bound per segment, exact value at the iterates, realised
    curvature of each step, and L_S.

    Parameters
    ----------
    bound, at_points, secant : (T,) arrays
        Max over seeds, per round.
    L_S : float
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    t = np.arange(len(bound))
    fig, ax = ps.figure(size=(8, 4))
    ax.plot(t, bound, color=ps.OURS, lw=1.5, label="certified λmax(∇²f^S) on segment t")
    ax.plot(t, at_points, color=ps.BOUND, lw=0.8, ls=":", label="exact λmax at X^t")
    ax.plot(t, secant, color=ps.MEASURED, lw=0.8, label="realised curvature of step t")
    ax.axhline(L_S, color=ps.OURS, ls="--", lw=1, label=f"L_S = {L_S:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel(ps.ROUND_LABEL + "  (max over seeds)")
    ax.set_ylabel("curvature")
    ax.set_title(title, fontsize=10)
    ps.legend(ax, fontsize=8)
    return fig


def tightness(cells):
    """Per grid cell: tightness (LHS UCB / bound) of ours (both forms) and of Theorem 4.4, log scale.

    Parameters
    ----------
    cells : list of GridCell
        The cells inside γ L_S < 2.

    Returns
    -------
    matplotlib.figure.Figure
    """
    y = np.arange(len(cells))
    fig, ax = ps.figure(size=(9, 0.3 * len(cells) + 2.4))
    ax.barh(y - 0.27, [c.tightness_post for c in cells], height=0.27, color=ps.OURS, label="ours, a posteriori")
    ax.barh(y, [c.tightness_prior for c in cells], height=0.27, color=ps.OURS_PRIOR, label="ours, a priori (certified f*)")
    inside = np.array([bool(c.paper["within"]) for c in cells])
    paper = np.array([c.tightness_paper for c in cells])
    ax.barh(y[inside] + 0.27, paper[inside], height=0.27, color=ps.PAPER, label="Theorem 4.4 (γ within its condition)")
    ax.barh(y[~inside] + 0.27, paper[~inside], height=0.27, color="white", edgecolor=ps.PAPER, hatch="///",
            label="Theorem 4.4 above its γ limit (says nothing)")
    ax.set_yticks(y, [f"{c.family[:5]} γL_S={c.gamma_L:.2f} T={c.T}" for c in cells], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1, color=ps.BOUND, lw=1)
    ax.set_xlabel("tightness: 95% UCB of the LHS / bound (1 = exact)")
    ax.set_title("Tightness of the two bounds on the same runs")
    ax.grid(False, axis="y")
    ps.legend(ax, outside=True, ncol=2, fontsize=8)
    return fig


def lhs_vs_bounds(panels):
    """One panel per step size (two per row, three from five panels on): the LHS with both forms of our bound
    and Theorem 4.4's RHS.

    Parameters
    ----------
    panels : list of (title, curves)
        ``curves`` as ``theory.ours.experiment.bound_curves`` returns them.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ncols = min(2 if len(panels) <= 4 else 3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = ps.figure(ncols, nrows, size=(ps.MAX_WIDTH, 3.0 * nrows + 0.6), sharey=True, squeeze=False)
    for ax, (title, cur) in zip(axes.ravel(), panels):
        ax.loglog(cur["T"], cur["lhs"], color=ps.MEASURED, lw=2, label="LHS (measured)")
        ax.loglog(cur["T"], cur["a_posteriori"], color=ps.OURS, label="ours, a posteriori")
        ax.loglog(cur["T"], cur["a_priori"], color=ps.OURS_PRIOR, ls="--", label="ours, a priori")
        ax.loglog(cur["paper_T"], cur["paper"], color=ps.PAPER, ls=":", lw=2, label="Theorem 4.4")
        ax.set_title(title, fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("rounds T")
    for ax in axes[:, 0]:
        ax.set_ylabel("average ‖∇f^S‖²")
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False)
    return fig


def step_size_story(lines):
    """‖∇f^S(X^t)‖² (thin) and its running average, the LHS (thick dashed), at two step sizes.

    Parameters
    ----------
    lines : list of (label, color, grad_sq (T,), Ts, lhs)

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = ps.figure(size=(7.5, 4.2))
    for label, color, grad_sq, Ts, lhs in lines:
        ax.loglog(np.arange(len(grad_sq)), grad_sq, color=color, lw=1, label=f"‖∇f^S(X^t)‖², {label}")
        ax.loglog(Ts, lhs, color=color, lw=2.2, ls="--", label=f"running average (the LHS), {label}")
    ax.set_xlabel(ps.ROUND_LABEL)
    ax.set_ylabel("‖∇f^S‖² (mean over seeds)")
    ax.set_title("The step our bound covers vs Theorem 4.4's γ_max, same runs", fontsize=10)
    ps.legend(ax, fontsize=7)
    return fig


def drift(rows):
    """Client drift realised (in our inequality) against Theorem 4.4's drift term, per (H, step).

    Parameters
    ----------
    rows : list of DriftRow

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = ps.figure(size=(8, 3.8))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r.ours.get("drift", np.nan) for r in rows], width=0.4, color=ps.OURS,
           label="drift realised, in our inequality")
    ax.bar(x + 0.2, [r.paper["drift"] for r in rows], width=0.4, color=ps.PAPER, label="Theorem 4.4's drift term")
    ax.set_yscale("log")
    ax.set_xticks(x, [f"H={r.H}\n" + ("Thm 4.4 γ_max" if r.label.startswith("paper") else
                                        r.label.replace("gamma L_pilot H = ", "γ L_pilot H = ")) for r in rows], fontsize=7)
    ax.set_ylabel("contribution to the bound")
    ax.set_title("Client drift: realised vs what Theorem 4.4 charges")
    ps.legend(ax, fontsize=8)
    return fig
