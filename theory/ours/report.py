"""The ``ours.*`` part of the verify report: a report.md section, a closing-note sentence, one figure.

Reads the claims' evidence (``theory.ours.checks``) and, for the figure, the grids the claims ran
(``Context.ours()`` / ``Context.ours_references()``). The bound is the toolkit's own, not the paper's:
every heading says so.
"""
from __future__ import annotations

import numpy as np

from ..figures import save_figure
from ..result import VERIFIED
from .experiment import PAPER, bound_curves

IDS = ("ours.h1.a_posteriori", "ours.h1.a_priori")


def _fmt(x, spec=".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def markdown(by_id: dict) -> str:
    """The report.md section of our H = 1 bound.

    Parameters
    ----------
    by_id : dict
        ``{claim id: theory.result.Result}`` of the claims that ran.

    Returns
    -------
    str
        Markdown; empty if neither bound claim ran or both had no cells.
    """
    post, prior = (by_id.get(cid) for cid in IDS)
    cells = {}
    for form, res in (("post", post), ("prior", prior)):
        for c in (res.evidence.get("cells", []) if res is not None else []):
            cells.setdefault((c["setting"], c["step"], c["T"]), {})[form] = c
    if not cells:
        return ""
    lines = ["\n## Our H = 1 bound (the toolkit's own result, not the paper's)\n",
             "The inequality is the standard non-convex SGD descent-lemma bound (Ghadimi & Lan 2013; Bottou, Curtis & "
             "Nocedal 2018, Thm 4.8) applied to f^S. What is the toolkit's: applying it to the sketched objective f^S, "
             "with the exact round variance V (every index set enumerated) instead of a variance bound and a local "
             "constant L_S of f^S on the segments the reference's runs visit, and these checks. The headline is the "
             "*a-priori* tightness (nothing taken from the run under test but its LHS); the a-posteriori form reads "
             "f^S(X^T) off the run and, at small gamma L_S, is the energy identity (LHS/RHS -> 1 by construction).\n",
             "LHS = (1/T) sum_t ||grad f^S(X^t)||^2 of the implementation (one-sided 95% upper bound over seeds). "
             "*a post.*: [f^S(X^0) - f^S(X^T)] / (gamma q T) + (L_S gamma / 2q) avg V on the implementation's iterates, "
             "q = 1 - L_S gamma / 2; *a priori*: the same with the certified f* and the reference's avg V. L_S: the "
             "largest Hessian eigenvalue of f^S over the reference's step segments (certified on those segments for least "
             "squares; for the implementation's runs a maximum over the reference's, not a certificate). Theorem 4.4's RHS at the same "
             "(gamma, T) with constants from the same reference runs; *in cond.* says whether gamma is inside its "
             "step-size condition. *dominant*: the larger term of the a-priori RHS.\n",
             "| setting | step | T | gamma L_S | LHS UCB95 | a post. RHS | LHS/RHS | a priori RHS | LHS/RHS | dominant | "
             "Thm 4.4 RHS | LHS/RHS | in cond. |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (setting, step, T), f in cells.items():
        p, q = f.get("post", {}), f.get("prior", {})
        any_ = p or q
        lines.append(f"| {setting} | {step} | {T} | {any_['gamma_L_S']:.3f} | {_fmt(any_.get('lhs_ucb95'))} | "
                     f"{_fmt(p.get('rhs'))} | {_fmt(p.get('tightness'), '.2g')} | {_fmt(q.get('rhs'))} | "
                     f"{_fmt(q.get('tightness'), '.2g')} | {q.get('dominant') or '-'} | {_fmt(any_.get('paper_rhs'))} | "
                     f"{_fmt(any_.get('paper_tightness'), '.1e')} | {any_.get('paper_within_its_condition', '-')} |")
    story = by_id.get("ours.h1.step_size")
    if story is not None and story.evidence.get("rows"):
        lines.append("\nStep sizes (reference runs): " + "; ".join(
            f"{r['setting']} T={r['T']}: mean ||grad f^S||^2 {r['ours_lhs']:.3g} at gamma L_S = {r['ours_gamma_L_S']:.2f} "
            f"({r['step_ratio']:.0f}x the paper's gamma_max) vs {r['paper_lhs']:.3g} at the paper's gamma_max; our limit "
            f"2/L_S is {r['gain_total']:.0f}x gamma_max: {r['gain_from_the_analysis']:.0f}x from the textbook analysis "
            f"alone (gamma < 2/L-bar with the paper's own L-bar = {r['L_bar_paper']:.3g}), x{r['gain_from_L_S']:.1f} "
            f"from the local L_S = {r['L_S']:.3g}" for r in story.evidence["rows"]) + ".")
    drift = by_id.get("ours.general_h.drift")
    if drift is not None and "max_drift_share_ours" in drift.evidence:
        lines.append(f"\nGeneral H (measured, not a theorem): the client drift realised is at most "
                     f"{drift.evidence['max_drift_share_ours']:.1%} of our a-posteriori RHS; Theorem 4.4's drift term is "
                     f"up to {drift.evidence['max_drift_share_paper']:.0%} of its RHS.")
    return "\n".join(lines) + "\n"


def closing_note(by_id: dict) -> str:
    """The sentence of the report's closing note about our H = 1 bound (the a-priori tightness first).

    Parameters
    ----------
    by_id : dict
        ``{claim id: theory.result.Result}`` of the claims that ran.

    Returns
    -------
    str
        Empty if neither bound claim ran.
    """
    parts, verified = [], False
    for cid, name in zip(IDS[::-1], ("a priori", "a posteriori")):   # the a-priori tightness first: the fair figure
        res = by_id.get(cid)
        if res is None:
            continue
        if res.status == VERIFIED:
            verified = True
            parts.append(f"{name} {res.evidence['tightness_min']:.2f}-{res.evidence['tightness_max']:.2f}")
        else:
            parts.append(f"{name} {res.status}")
    if not parts:
        return ""
    if not verified:
        return "Our H = 1 bound (the textbook descent-lemma bound applied to f^S): " + ", ".join(parts) + "."
    ev = next((by_id[c].evidence for c in IDS if c in by_id and by_id[c].evidence.get("paper_tightness_range")), {})
    paper, inside = ev.get("paper_tightness_range"), ev.get("paper_tightness_range_within_its_condition")
    return ("Our H = 1 bound (the textbook descent-lemma bound applied to f^S with exact V and local L_S): LHS/RHS "
            + ", ".join(parts)
            + (f"; Theorem 4.4 at the same (gamma, T): LHS/RHS {_span(paper)}" if paper else "")
            + (f" ({_span(inside)} where gamma is inside its condition)" if inside else "") + ".")


def _span(lo_hi) -> str:
    lo, hi = (format(x, ".1e") for x in lo_hi)
    return lo if lo == hi else f"{lo}-{hi}"


def plot(path, results, references) -> bool:
    """The figure of our bound: two panels on the least-squares grid.

    Left: the implementation's LHS against T at the largest step inside gamma L_S < 2, with both forms
    of our bound and Theorem 4.4's RHS. Right: ``||grad f^S(X^t)||^2`` on the reference at the paper's
    gamma_max and at that step.

    Parameters
    ----------
    path : str or os.PathLike
        The PNG written.
    results : list of theory.ours.experiment.GridResult
        The implementation's grids.
    references : list of theory.ours.experiment.GridResult
        The reference's grids.

    Returns
    -------
    bool
        False (nothing written) if there is nothing to show.
    """
    res = results[0]
    steps = [st for st in res.steps if st["label"] != PAPER and st["impl"].rounds == res.grid.rounds]
    if not steps:
        return False
    import matplotlib
    matplotlib.use("Agg")
    from fslora_ref import plotting_style as ps
    r, budgets = res.grid.setting.rank, res.grid.setting.budgets
    curves = [(st, bound_curves(st, res.f_star, r, budgets)) for st in steps]
    inside = [(st, c) for st, c in curves if np.isfinite(c["a_posteriori"][-1])]
    st, cur = max(inside or curves, key=lambda sc: sc[0]["gamma"])
    fig, (ax, bx) = ps.figure(2, size=(10, 4.2))
    ax.loglog(cur["T"], cur["lhs"], color=ps.MEASURED, lw=2, label="LHS (mean over seeds)")
    ax.loglog(cur["T"], cur["a_posteriori"], color=ps.OURS, label="ours, a posteriori")
    ax.loglog(cur["T"], cur["a_priori"], "--", color=ps.OURS_PRIOR, label="ours, a priori (certified f*)")
    within = next((c.paper.get("within") for c in res.cells if c.label == st["label"]), None)
    ax.loglog(cur["paper_T"], cur["paper"], ":", color=ps.PAPER, lw=2,
              label="Theorem 4.4 RHS" + ("" if within else " (gamma outside its condition)"))
    ax.set_title(f"{res.grid.setting.name}, {st['label']} (gamma = {st['gamma']:.3g})", fontsize=9)
    ax.set_xlabel("rounds T")
    ax.set_ylabel("(1/T) sum_t ||grad f^S(X^t)||^2")
    ps.legend(ax, fontsize=7)
    ax.grid(True, which="both", alpha=0.2)
    ref = references[0]
    for rst in ref.steps:
        if rst["label"] == PAPER or rst["label"] == st["label"]:
            g = rst["ref"].grad_sq.mean(axis=0)
            bx.semilogy(np.arange(g.size), g, color=ps.PAPER if rst["label"] == PAPER else ps.MEASURED,
                        label=f"{rst['label']} (gamma = {rst['gamma']:.3g})")
    bx.set_title("reference: ||grad f^S(X^t)||^2, mean over seeds", fontsize=9)
    bx.set_xlabel(ps.ROUND_LABEL)
    ps.legend(bx, fontsize=7)
    bx.grid(True, which="both", alpha=0.2)
    save_figure(fig, path)
    return True
