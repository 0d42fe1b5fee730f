"""The figures of notebook 01 (the sketching operator), in the house style (plotstyle.py).

Kept out of the notebook so its cells show the idea, not the plotting. Every function draws what it
is given and returns the figure; none computes anything the notebook asserts.
"""
from __future__ import annotations

import numpy as np

import pictures
import plotstyle as ps


def bsa_picture(B, S, A, BSA):
    """B, S, A and B S A side by side, the kept columns / rows / diagonal entries outlined.

    Parameters
    ----------
    B : (m, r) array
    S : fslora_ref.Sketch
    A : (r, n) array
    BSA : (m, n) array

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.patches import Rectangle
    (m, r), n = B.shape, A.shape[1]
    fig, axes = ps.figure(4, size=(10, 3.3), gridspec_kw={"width_ratios": [r, r, n, n]})
    lim = float(max(np.abs(B).max(), np.abs(A).max()))
    pictures.matrix(axes[0], B, "B (m×r)", "rank index j", "input index", lim)
    pictures.matrix(axes[1], S.dense(), f"S: r/k = {S.scale:.3g} on I", "rank index j", "rank index j")
    pictures.matrix(axes[2], A, "A (r×n)", "output index", "rank index j", lim)
    pictures.matrix(axes[3], BSA, "B S A = (r/k) B_I A_I", "output index", "input index")
    for j in S.indices:
        axes[0].add_patch(Rectangle((j - 0.5, -0.5), 1, m, fill=False, ec="black", lw=1.8))
        axes[1].add_patch(Rectangle((j - 0.5, j - 0.5), 1, 1, fill=False, ec="black", lw=1.8))
        axes[2].add_patch(Rectangle((-0.5, j - 0.5), n, 1, fill=False, ec="black", lw=1.8))
    fig.suptitle(f"The sketch keeps k = {S.k} of r = {r} rank-one pieces b_j a_j^T (outlined: I = {S.indices.tolist()})")
    return fig


def moments(r, second, cross, worst):
    """Exact moments of diag(S) at rank ``r``: enumerated (markers) against the closed forms (lines).

    Parameters
    ----------
    r : int
    second, cross : (r,) arrays
        Enumerated E[s_j^2] and E[s_j s_l] (j != l) for k = 1..r.
    worst : float
        The worst enumeration error over every (r, k), for the title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ks = np.arange(1, r + 1)
    kd = np.linspace(1, r, 200)
    fig, ax = ps.figure()
    c = [ps.series_color(i) for i in range(3)]
    ax.plot(kd, r / kd, color=c[0], label=r"$E[s_j^2] = r/k$")
    ax.plot(kd, r * (kd - 1) / (kd * (r - 1)), color=c[1], label=r"$E[s_j s_l] = r(k-1)/(k(r-1))$")
    ax.plot(kd, (r - kd) / (kd * (r - 1)), color=c[2], label=r"$c_k = (r-k)/(k(r-1))$")
    ax.plot(ks, second, "o", color=c[0], ms=7, mfc="none")
    ax.plot(ks, cross, "s", color=c[1], ms=7, mfc="none")
    ax.plot(ks, (np.asarray(second) - 1) / (r - 1), "^", color=c[2], ms=7, mfc="none")
    ax.plot([], [], "o", color="black", mfc="none", label="enumerated (all C(r,k) sets)")
    ax.axhline(1.0, color=ps.TERM, lw=0.8, ls=":", label=r"$E[s_j] = 1$")
    ax.set_xlabel(f"client budget k  (r = {r})")
    ax.set_ylabel("moment of diag(S)")
    ax.set_title(f"Exact moments: enumeration on the closed forms (worst error {worst:.0e})")
    ps.legend(ax)
    return fig


def monte_carlo(ns, curves, r):
    """Running-mean error of diag(S) against the number of draws, with its Hoeffding bound.

    Parameters
    ----------
    ns : (n,) array
        1..n.
    curves : dict
        ``{k: (error (n,), bound (n,))}``.
    r : int

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = ps.figure()
    for i, (k, (err, bound)) in enumerate(curves.items()):
        color = ps.series_color(i)
        ax.loglog(ns, err, color=color, lw=1, label=f"k/r = {k}/{r}: max_j |mean s_j − 1|")
        ax.loglog(ns, bound, "--", color=color, lw=1, label=f"k/r = {k}/{r}: Hoeffding bound (δ = 1e-3)")
    ax.loglog(ns, 1 / np.sqrt(ns), ":", color=ps.TERM, label=r"slope $n^{-1/2}$")
    ax.set_xlabel("number of sketches drawn n")
    ax.set_ylabel("max_j |running mean of s_j − 1|")
    ax.set_title(f"The mean of S converges to I (r = {r})")
    ax.set_ylim(1e-3, 30)
    ps.legend(ax, fontsize=8)
    return fig


def variance_vs_ratio(ratios, closed, mc_mean, mc_se, draws):
    """Relative variance of B S A against k/r: closed form (line), Monte Carlo (markers, ±2 s.e.).

    Parameters
    ----------
    ratios, closed, mc_mean, mc_se : (K,) arrays
    draws : int
        Monte Carlo draws per k.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = ps.figure()
    ax.plot(ratios, closed, color=ps.BOUND, label="closed form c_k (r Σ‖b_j‖²‖a_j‖² − ‖BA‖²)")
    ax.errorbar(ratios, mc_mean, yerr=2 * np.asarray(mc_se), fmt="o", ms=4, capsize=3, color=ps.MEASURED,
                label=f"Monte Carlo, {draws} draws per k (±2 s.e.)")
    ax.set_yscale("log")
    ax.set_xlabel("sketching ratio k/r")
    ax.set_ylabel("E‖BSA − BA‖² / ‖BA‖²")
    ax.set_title("Variance of the sketched product (0 at k = r, off the log axis)")
    ps.legend(ax)
    return fig
