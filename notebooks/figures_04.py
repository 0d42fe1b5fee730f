"""The figures of notebook 04 (Theorem 4.4 and Corollary 4.5), in the house style (plotstyle.py).

Conventions shared with ``fslora verify``'s PNGs: a measured left-hand side in ``ps.MEASURED``
(FSLoRA's colour), the bound in ``ps.BOUND`` (black), its terms and reference slopes in ``ps.TERM``
(grey), log-log axes. Every function draws what it is given and returns the figure; none computes
anything the notebook asserts.
"""
from __future__ import annotations

import numpy as np

import plotstyle as ps

TERM_STYLES = (("optimisation", "--"), ("noise", ":"), ("drift", "-."))


def lhs_vs_rhs(Ts, lhs, rhs, terms, seeds, title):
    """The LHS of Theorem 4.4 against T, with its RHS and the RHS's three terms (log-log).

    Parameters
    ----------
    Ts : (T,) array
    lhs, rhs : (T,) arrays
    terms : list of dict
        Per T: ``optimisation``, ``noise``, ``drift``.
    seeds : int
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = ps.figure(size=(7.5, 4.4))
    ax.loglog(Ts, lhs, color=ps.MEASURED, lw=2.2, label=f"LHS: (1/T) Σ_t ‖∇f^S(X^t)‖², mean over {seeds} seeds")
    ax.loglog(Ts, rhs, color=ps.BOUND, lw=2.2, label="RHS of Theorem 4.4 (the reference's constants)")
    for key, style in TERM_STYLES:
        ax.loglog(Ts, [t[key] for t in terms], style, color=ps.TERM, label=f"RHS term: {key}")
    ax.set_xlabel("number of rounds T")
    ax.set_ylabel("average ‖∇f^S‖²")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.2)
    ps.legend(ax, fontsize=8)
    return fig


def tightness_grid(rows):
    """Per setting: LHS/RHS (left) and the smallest plateau the check detects (right). The legends sit
    below the panels, so they never cover a bar.

    Parameters
    ----------
    rows : list of dict
        ``ThresholdOutcome.to_json()`` per setting.

    Returns
    -------
    matplotlib.figure.Figure
    """
    names = [r["setting"] for r in rows]
    y = np.arange(len(rows))
    fig, (ax1, ax2) = ps.figure(2, size=(10, 0.5 * len(rows) + 2.8), sharey=True)
    ax1.barh(y, [r["lhs_over_rhs"] for r in rows], color=ps.MEASURED, height=0.6)
    ax1.axvline(1.0, color=ps.BOUND, lw=1.6, label="LHS = RHS (the bound)")
    ax1.set_xscale("log")
    ax1.set_yticks(y, names)
    ax1.invert_yaxis()
    ax1.set_xlabel("95% UCB of LHS / RHS")
    ax1.set_title("Theorem 4.4 per setting (< 1: holds)")
    ps.legend(ax1, outside=True, ncol=1)
    for j, (key, label, color) in enumerate((("detectable_plateau", "detectable plateau (the RHS)", ps.BOUND),
                                             ("initial_grad_sq", "‖∇f^S(X^0)‖²", ps.series_color(1)),
                                             ("late_grad_sq", "reference's late ‖∇f^S‖²", ps.MEASURED))):
        ax2.barh(y + (j - 1) * 0.27, [r[key] for r in rows], height=0.27, color=color, label=label)
    ax2.set_xscale("log")
    ax2.set_xlabel("squared gradient norm of f^S")
    ax2.set_title("What a plateau must exceed to be caught")
    ps.legend(ax2, outside=True, ncol=2)
    from matplotlib.ticker import NullFormatter
    ratios = [r["lhs_over_rhs"] for r in rows]
    ax1.set_xlim(min(ratios) / 5, max(2.0, 2 * max(ratios)))          # bars start inside the axis, 1 in view
    norms = [r[key] for r in rows for key in ("detectable_plateau", "initial_grad_sq", "late_grad_sq")]
    ax2.set_xlim(min(norms) / 5, 2 * max(norms))
    for ax in (ax1, ax2):
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(True, axis="x", which="major", alpha=0.3)
        ax.grid(False, axis="y")
    return fig


def rate_vs_ratio(cor_data, ev, dep):
    """Corollary 4.5: LHS and RHS at γ(T) against T with the fitted slope (left); the LHS against
    sqrt(L̃) across sketching ratios (right, descriptive).

    Parameters
    ----------
    cor_data : dict
        ``T``, ``lhs``, ``rhs``, ``slope``.
    ev : dict
        The claim's evidence (``T_exponent``, ``T_exponent_ci95``, ``setting``, ``T_min``).
    dep : dict
        ``rows`` (``L_tilde``, ``lhs_mean``, ``ratio``), ``T``, ``exponent``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    T_ = np.array(cor_data["T"], dtype=float)
    lhs = np.asarray(cor_data["lhs"], dtype=float)
    fig, (ax1, ax2) = ps.figure(2, size=(10, 4.0))
    ax1.loglog(T_, lhs, "o-", color=ps.MEASURED, ms=7, label="LHS (mean over seeds)")
    ax1.loglog(T_, cor_data["rhs"], "s-", color=ps.BOUND, label="RHS at γ(T)")
    grid = np.geomspace(T_.min(), T_.max(), 20)
    c0 = np.mean(np.log(lhs) - cor_data["slope"] * np.log(T_))
    lo, hi = ev["T_exponent_ci95"]
    ax1.loglog(grid, np.exp(c0 + cor_data["slope"] * np.log(grid)), "--", color=ps.MEASURED, alpha=0.6,
               label=f"fitted slope {ev['T_exponent']:.2f} [{lo:.2f}, {hi:.2f}]")
    ax1.loglog(grid, lhs[0] * (grid / T_[0]) ** -0.5, ":", color=ps.TERM, label="slope −1/2")
    ax1.set_xlabel("rounds T (≥ T_min)")
    ax1.set_ylabel("(1/T) Σ_t ‖∇f^S(X^t)‖²")
    ax1.set_title(f"Corollary 4.5 on '{ev['setting']}' (T_min = {ev['T_min']:.0f})", fontsize=10)
    ax1.grid(True, which="both", alpha=0.2)
    ps.legend(ax1, fontsize=8)
    sqrt_lt = np.sqrt([row["L_tilde"] for row in dep["rows"]])
    ax2.loglog(sqrt_lt, [row["lhs_mean"] for row in dep["rows"]], "o", color=ps.MEASURED, ms=8,
               label="measured (mean over seeds)")
    for x_, row in zip(sqrt_lt, dep["rows"]):
        ax2.annotate(f"k/r = {row['ratio']:g}", (x_, row["lhs_mean"]), xytext=(5, 5), textcoords="offset points",
                     fontsize=8)
    ax2.set_xlabel("sqrt(L̃)  (smaller k/r → right)")
    ax2.set_ylabel(f"LHS at T = {dep['T']}")
    ax2.set_title(f"Descriptive: exponent {dep['exponent']:.2f} in sqrt(L̃) (bound: ≤ 1)", fontsize=10)
    ax2.grid(True, which="both", alpha=0.2)
    ps.legend(ax2, fontsize=8)
    return fig


def settling(curves, title):
    """‖∇f^S‖² and ‖∇f‖² against γt at γ and γ/2 (same γT).

    Parameters
    ----------
    curves : list of (gamma, time axis (T,), sketched (T,), plain (T,))
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = ps.figure(size=(7.5, 4))
    for (gamma, t, sketched, plain), style in zip(curves, ("-", "--")):
        ax.semilogy(t, sketched, style, color=ps.MEASURED, lw=1, label=f"‖∇f^S‖², γ = {gamma:.3g}")
        ax.semilogy(t, plain, style, color=ps.series_color(4), lw=1, label=f"‖∇f‖², γ = {gamma:.3g}")
    ax.set_xlabel("γ t (time along the gradient flow)")
    ax.set_ylabel("squared gradient norm (mean over seeds)")
    ax.set_title(title, fontsize=10)
    ps.legend(ax, fontsize=8, ncol=2)
    return fig
