"""The verify report: console table, report.md, report.json and the two plots (written atomically)."""
from __future__ import annotations

import io
import json
import os

import numpy as np

from fslora_ref.outputs import atomic_write_bytes
from fslora_ref.text_table import format_table

from . import power_catalogue
from .figures import save_figure
from .ours import report as ours_report
from .result import VIOLATED

FILES = ("report.json", "report.md", "lhs_vs_rhs.png", "rate_vs_T.png", "ours_bound.png")


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    return x


def catches(claim) -> str:
    """How many defective implementations of the power matrix the claim violates, in short ("7/26").

    Parameters
    ----------
    claim : theory.claims.Claim
        The claim.

    Returns
    -------
    str
        "-" for the implementation-independent mathematics (their mutants are in tests/theory), "?" for
        a claim absent from the power matrix.
    """
    if not claim.through_impl:
        return "-"
    got = power_catalogue.shown_to_catch(claim.id)
    return f"{len(got['caught'])}/{got['defective_rows']}" if got["defective_rows"] else "?"


TABLE_WIDTHS = (None, None, None, 30, None, 34)   # method and key number wrap at words (never cut)


def table(results) -> str:
    """The verify console table: claim, runs the implementation?, defects shown caught, method, status, key number.

    The method and the key number wrap at word boundaries (``TABLE_WIDTHS``), never cut.

    Parameters
    ----------
    results : list of tuple
        ``[(theory.claims.Claim, theory.result.Result, seconds)]`` from :func:`theory.claims.run_all`.

    Returns
    -------
    str
        A header, a rule of dashes and the rows (:func:`fslora_ref.text_table.format_table`).
    """
    rows = [("claim", "impl", "catches", "method", "status", "key number")]
    rows += [(c.id, "yes" if c.through_impl else "-", catches(c), c.method, r.status, r.key) for c, r, _ in results]
    return format_table(rows, TABLE_WIDTHS)


def report_json(results, meta: dict) -> dict:
    """The content of report.json: every claim with its statement, method, status, key, evidence and power.

    Parameters
    ----------
    results : list of tuple
        ``[(theory.claims.Claim, theory.result.Result, seconds)]`` from :func:`theory.claims.run_all`.
    meta : dict
        The run's metadata (quick, seconds, implementation).

    Returns
    -------
    dict
        JSON-ready (non-finite floats become None).
    """
    return _jsonable({"claims": [{"id": c.id, "statement": c.statement, "method": c.method, "status": r.status,
                                  "key": r.key, "through_implementation": c.through_impl, "seconds": round(sec, 3),
                                  "shown_to_catch": power_catalogue.shown_to_catch(c.id) if c.through_impl else None,
                                  "evidence": r.evidence} for c, r, sec in results], "meta": meta})


def closing_note(results) -> str:
    """The note printed under the table: what Theorem 4.4, Corollary 4.5 and our bound showed, in a few sentences.

    Parameters
    ----------
    results : list of tuple
        ``[(theory.claims.Claim, theory.result.Result, seconds)]`` from :func:`theory.claims.run_all`.

    Returns
    -------
    str
        Empty when none of those claims ran.
    """
    by_id = {c.id: r for c, r, _ in results}
    parts = []
    thm = by_id.get("thm4.4.bound")
    if thm is not None and thm.evidence.get("settings"):
        rows = [s for s in thm.evidence["settings"] if s["within_condition"]]
        parts.append("Theorem 4.4: " + "; ".join(
            f"{s['setting']} (T={s['T']}, "
            + ("not run: " + s["not_run"] if "not_run" in s else
               "diverged" if s.get("diverged") else
               f"its LHS fell {s['lhs_fall_factor']:.2g}x, LHS/RHS {s['lhs_over_rhs']:.2g}")
            + f"): informative {s['informative']:.2f} (detects a plateau ||grad f^S||^2 >= {s['detectable_plateau']:.3g}"
            + ("" if s["is_informative"] else "; vacuous: cannot verify the claim on its own") + ")"
            for s in rows) + ".")
    cor = by_id.get("cor4.5.rate")
    if cor is not None and "T_exponent" in cor.evidence:
        lo, hi = cor.evidence["T_exponent_ci95"]
        parts.append(f"Corollary 4.5: LHS ~ T^{cor.evidence['T_exponent']:.2f} (95% CI [{lo:.2f}, {hi:.2f}]; the bound "
                     f"scales like T^-1/2).")
        dep = cor.evidence.get("sqrt_L_tilde_exponent")
        if dep and "exponent" in dep:
            parts.append(f"Descriptive: exponent in sqrt(L-tilde) over ratios {[r['ratio'] for r in dep['rows']]}: "
                         f"{dep['exponent']:.2f} [{dep['ci95'][0]:.2f}, {dep['ci95'][1]:.2f}] (the bound allows 1).")
    ours = ours_report.closing_note(by_id)
    if ours:
        parts.append(ours)
    return " ".join(parts)


def _cell(text) -> str:
    """Markdown table cell: norms' pipes escaped so they do not split the row."""
    return str(text).replace("|", "\\|")


def _theorem_markdown(out, thm):
    out.write("\n## Theorem 4.4 per setting\n\nThe implementation's LHS against the RHS built from the reference's "
              "constants (measured on the reference's runs at the same gamma and T). *fall* is ||grad f^S(X^0)||^2 "
              "over the implementation's LHS (the reference's in brackets); *informative* is the plateau of "
              "||grad f^S||^2 above which an implementation is caught (the RHS) relative to ||grad f^S(X^0)||^2: a "
              "setting at >= 1 is vacuous (a run that never moves passes it) and cannot make the claim verified on "
              "its own; *T for 0.1* is the T at which the bound (at its best gamma) would catch a plateau of "
              "0.1 ||grad f^S(X^0)||^2.\n\n"
              "| setting | T | gamma | gamma_max | c_h | fall | LHS UCB95 | RHS | optimisation / noise / drift | "
              "LHS/RHS | informative | T for 0.1 |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for s in thm.evidence["settings"]:
        t = s["rhs_terms"]
        lhs = f"{s['lhs_ucb95']:.3g}" if "lhs_ucb95" in s else "not run" if "not_run" in s else "diverged"
        ratio = f"{s['lhs_over_rhs']:.2g}" if "lhs_over_rhs" in s else "-"
        fall = f"{s['lhs_fall_factor']:.2g}x" if "lhs_fall_factor" in s else "-"
        out.write(f"| {s['setting']} ({_cell(s['describe'])}) | {s['T']} | {s['gamma']:.3g} | {s['gamma_max']:.3g} | "
                  f"{s['c_h']:g} | {fall} ({s['reference_lhs_fall_factor']:.2g}x) | {lhs} | {s['rhs']:.3g} | "
                  f"{t['optimisation']:.3g} / {t['noise']:.3g} / {t['drift']:.3g} | {ratio} | "
                  f"{s['informative']:.2f}{'' if s['is_informative'] else ' (vacuous)'} | "
                  f"{s['T_to_detect_a_tenth_of_initial']:.1e} |\n")
    first = thm.evidence["settings"][0]
    out.write(f"\nThe reference's constants for `{first['setting']}` (how each was obtained):\n\n"
              "| constant | value | method | over |\n|---|---|---|---|\n")
    for name, c in first["constants"].items():
        out.write(f"| {name} | {c['value']:.4g} | {c['method']} | {_cell(c['note'])} |\n")


def _corollary_markdown(out, cor):
    ev = cor.evidence
    out.write(f"\n## Corollary 4.5 on `{ev['setting']}`\n\nT_min = {ev['T_min_formula']} = {ev['T_min']:.0f} "
              f"(reference L = {ev['L_pilot']:.4g}, L-tilde = {ev['L_tilde_pilot']:.4g}).\n\n"
              "| T | gamma = sqrt(N/(T H L-tilde)) | gamma_max (reference at that T) | inside | LHS mean | LHS UCB95 | "
              "RHS | LHS/RHS |\n|---|---|---|---|---|---|---|---|\n")
    for r in ev["runs"]:
        if r["diverged"]:
            out.write(f"| {r['T']} | {r['gamma']:.4g} | {r['gamma_max']:.4g} | {r['within_condition']} | diverged | | "
                      f"{r['rhs']:.3g} | |\n")
            continue
        out.write(f"| {r['T']} | {r['gamma']:.4g} | {r['gamma_max']:.4g} | {r['within_condition']} | "
                  f"{r['lhs_mean']:.3g} | {r['lhs_ucb95']:.3g} | {r['rhs']:.3g} | {r['lhs_over_rhs']:.2g} |\n")
    if "T_exponent" in ev:
        lo, hi = ev["T_exponent_ci95"]
        out.write(f"\nFitted exponent of the LHS in T: {ev['T_exponent']:.3f} (95% bootstrap CI [{lo:.3f}, {hi:.3f}]); "
                  f"the bound scales like T^-1/2 ({ev['rate_rule']}).\n")
    dep = ev.get("sqrt_L_tilde_exponent")
    if dep and "exponent" in dep:
        out.write(f"\nDescriptive (not a pass/fail claim): at T = {dep['T']}, exponent of the LHS in sqrt(L-tilde) over "
                  f"k/r = {[r['ratio'] for r in dep['rows']]}: {dep['exponent']:.3f} [{dep['ci95'][0]:.3f}, "
                  f"{dep['ci95'][1]:.3f}]; {dep['note']}.\n")


def report_markdown(results, meta: dict) -> str:
    """The content of report.md: a summary, the claims table, the theorem's, the corollary's and our bound's sections.

    Parameters
    ----------
    results : list of tuple
        ``[(theory.claims.Claim, theory.result.Result, seconds)]`` from :func:`theory.claims.run_all`.
    meta : dict
        The run's metadata (quick, seconds, implementation).

    Returns
    -------
    str
    """
    out = io.StringIO()
    counts = {}
    for _, r, _ in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    out.write("# fslora verify\n\n")
    out.write(f"Implementation under test: {meta.get('implementation', 'reference')}.\n\n")
    out.write(f"Mode: {'quick' if meta.get('quick') else 'full'}; {len(results)} claims; "
              + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f"; {meta.get('seconds', 0):.1f} s.\n\n")
    out.write("Claims marked *impl* run the implementation under test; the others are implementation-independent "
              "mathematics. Constants (L, sigma_s^2, sigma_g^2, c_h, delta_h^2), f* and step-size limits always come "
              "from the reference's own runs: for bilinear LoRA no constant is global, so each is the maximum over a "
              "subsample of the points the reference's runs visit (a uniform grid of server iterates plus those with "
              "the largest ||B||^2 + ||A||^2, every client, the local points of those rounds, and for L every "
              "sketched point [B S; A]), computed exactly there (exact Hessians, every sketch enumerated). f* is the "
              "exact unconstrained least-squares minimum (a lower bound of f^S) or 0 for cross-entropy.\n\n")
    out.write("Statuses: *verified* (every cell that ran holds, and the claim could have failed), *violated*, "
              "*inconclusive* (nothing shown violated, not everything shown to hold), *identity* (holds by "
              "construction of the check: only a coding error of the toolkit fails it), *measurement* (numbers "
              "without a pass/fail rule), *outside_conditions*, *skipped*. *Shown to catch*: the defective "
              "implementations of the power matrix (`tests/theory/power_matrix.py`, quick profile) the claim "
              "violates on its own.\n\n")
    out.write("| claim | impl | statement | method | status | key number | shown to catch |\n"
              "|---|---|---|---|---|---|---|\n")
    for c, r, _ in results:
        shown = "-"
        if c.through_impl:
            got = power_catalogue.shown_to_catch(c.id)
            shown = got["summary"] + (": " + ", ".join(got["caught"]) if got["caught"] else "")
        out.write(f"| `{c.id}` | {'yes' if c.through_impl else ''} | {_cell(c.statement)} | {_cell(c.method)} | "
                  f"**{r.status}** | {_cell(r.key)} | {_cell(shown)} |\n")
    by_id = {c.id: r for c, r, _ in results}
    if by_id.get("thm4.4.bound") is not None and by_id["thm4.4.bound"].evidence.get("settings"):
        _theorem_markdown(out, by_id["thm4.4.bound"])
    if by_id.get("cor4.5.rate") is not None and "runs" in by_id["cor4.5.rate"].evidence:
        _corollary_markdown(out, by_id["cor4.5.rate"])
    lim = by_id.get("thm4.4.above_limit")
    if lim is not None:
        out.write(f"\nAbove the step-size limit ({lim.evidence.get('setting')}): {lim.key}.\n")
    out.write(ours_report.markdown(by_id))
    violated = [(c, r) for c, r, _ in results if r.status == VIOLATED]
    if violated:
        out.write("\n## Counterexamples\n\n")
        for c, r in violated:
            out.write(f"### `{c.id}`\n\n{c.statement}\n\n```json\n{json.dumps(_jsonable(r.evidence), indent=1)[:4000]}\n```\n\n")
    out.write("\n## Closing note\n\n" + closing_note(results) + "\n")
    out.write("\nPlots: `lhs_vs_rhs.png` (Theorem 4.4 over T), `rate_vs_T.png` (Corollary 4.5), `ours_bound.png` "
              "(our H = 1 bound over T, and the step sizes it covers). "
              "Every number above is in `report.json`.\n")
    return out.getvalue()


def plot_lhs_rhs(path, outcome):
    """Plot the implementation's LHS against T with Theorem 4.4's RHS and its terms, log-log.

    Parameters
    ----------
    path : str or os.PathLike
        The PNG written.
    outcome : theory.paper.theorem.Outcome
        A setting the implementation ran without diverging.
    """
    import matplotlib
    matplotlib.use("Agg")
    from fslora_ref import plotting_style as ps
    lhs = outcome.candidate.lhs_curve()
    T = np.arange(1, len(lhs) + 1)
    consts = outcome.constants
    at_T = consts.rhs(outcome.setting, outcome.lr, int(T[-1]), outcome.c_h)   # only the optimisation term moves, as 1/T
    terms = [dict(at_T, optimisation=at_T["optimisation"] * T[-1] / t,
                  rhs=at_T["optimisation"] * T[-1] / t + at_T["noise"] + at_T["drift"]) for t in T]
    fig, ax = ps.figure(size=(7, 4.4))
    ax.loglog(T, lhs, "-", color=ps.MEASURED, lw=2, label=f"LHS ({outcome.candidate.runner}), mean over {outcome.candidate.seeds} seeds")
    if outcome.candidate.runner != outcome.reference.runner:
        ax.loglog(T, outcome.reference.lhs_curve(), "-", color=ps.series_color(4), lw=1, label="LHS (reference)")
    ax.loglog(T, [t["rhs"] for t in terms], "-", color=ps.BOUND, lw=2, label="RHS of Theorem 4.4 (reference constants)")
    for key, style in (("optimisation", "--"), ("noise", ":"), ("drift", "-.")):
        ax.loglog(T, [t[key] for t in terms], style, color=ps.TERM, label=f"RHS term: {key}")
    ax.set_xlabel("rounds T")
    ax.set_ylabel("average ||grad f^S||^2")
    ax.set_title(f"Theorem 4.4 on {outcome.setting.name} (gamma={outcome.lr:.3g} <= {outcome.gamma_max:.3g})", fontsize=9)
    ps.legend(ax, fontsize=7)
    ax.grid(True, which="both", alpha=0.2)
    save_figure(fig, path)


def plot_rate(path, data):
    """Plot Corollary 4.5: LHS and RHS at gamma = sqrt(N / (T H L-tilde)) against T (log-log), with the fitted slope.

    Parameters
    ----------
    path : str or os.PathLike
        The PNG written.
    data : dict
        The plot data of :func:`theory.paper.corollary.corollary` (``T``, ``lhs``, ``rhs``, optional
        ``slope``).
    """
    import matplotlib
    matplotlib.use("Agg")
    from fslora_ref import plotting_style as ps
    T, lhs, rhs = (np.array(data[k], dtype=float) for k in ("T", "lhs", "rhs"))
    fig, ax = ps.figure(size=(6.4, 4))
    ax.loglog(T, lhs, "o-", color=ps.MEASURED, label="LHS (mean over seeds)")
    ax.loglog(T, rhs, "s-", color=ps.BOUND, label="RHS of Theorem 4.4 at the corollary's gamma")
    if "slope" in data:
        grid = np.geomspace(T.min(), T.max(), 20)
        c = np.mean(np.log(lhs) - data["slope"] * np.log(T))
        ax.loglog(grid, np.exp(c + data["slope"] * np.log(grid)), "--", color=ps.MEASURED, alpha=0.6,
                  label=f"fitted slope {data['slope']:.2f}")
        ax.loglog(grid, lhs[0] * (grid / T[0]) ** -0.5, ":", color=ps.TERM, label="slope -1/2 (the bound's rate)")
    ax.set_xlabel("rounds T")
    ax.set_ylabel("(1/T) sum_t ||grad f^S(X^t)||^2")
    ax.set_title("Corollary 4.5: gamma = sqrt(N/(T H L-tilde))", fontsize=9)
    ps.legend(ax, fontsize=7)
    ax.grid(True, which="both", alpha=0.2)
    save_figure(fig, path)


def write_all(out_dir, results, ctx, meta: dict):
    """Write report.json, report.md and the plots into ``out_dir`` (atomically), removing plots of an earlier run.

    Parameters
    ----------
    out_dir : str
        The output directory (already prepared).
    results : list of tuple
        ``[(theory.claims.Claim, theory.result.Result, seconds)]`` from :func:`theory.claims.run_all`.
    ctx : theory.claims.Context
        The claims' context (its runs feed the plots).
    meta : dict
        The run's metadata.

    Returns
    -------
    list of str
        The paths written.
    """
    paths = {name: os.path.join(out_dir, name) for name in FILES}
    atomic_write_bytes(paths["report.json"], json.dumps(report_json(results, meta), indent=1).encode())
    atomic_write_bytes(paths["report.md"], report_markdown(results, meta).encode())
    written = [paths["report.json"], paths["report.md"]]
    ran = [o for o in (ctx._theorem or []) if o.candidate is not None and not o.candidate.diverged]
    if ran:   # the most informative setting the implementation ran
        plot_lhs_rhs(paths["lhs_vs_rhs.png"], min(ran, key=lambda o: o.informative))
        written.append(paths["lhs_vs_rhs.png"])
    if ctx._corollary and len(ctx._corollary[1].get("T", [])) >= 2:
        plot_rate(paths["rate_vs_T.png"], ctx._corollary[1])
        written.append(paths["rate_vs_T.png"])
    if ctx._ours and ours_report.plot(paths["ours_bound.png"], ctx._ours, ctx.ours_references()):
        written.append(paths["ours_bound.png"])
    for stale in set(paths.values()) - set(written):   # a plot of an earlier run would no longer match the report
        if os.path.exists(stale):
            os.remove(stale)
    return written
