"""The claims report: console table, report.json (verify's shape), report.md, one PNG per claim.

Shared by ``fslora claims`` (NumPy families) and ``fslora claims --llm`` (the bridge): both
hand over report entries from :func:`theory.empirical.claims.evaluate` and the runs behind them.
"""
from __future__ import annotations

import io
import os

import numpy as np

from fslora_ref.outputs import atomic_write_bytes, write_figure, write_json

from .stats import ALPHA, STATUSES, Hypothesis, Metric, claimed_region, confidence_level, mean_band

STATISTICS_TEXT = (
    "Every comparison pairs two arms run on the same seed (same problem instance, initialisation, minibatch "
    "and sketch streams) and works on the per-seed log loss ratio d = log(L_treatment / L_reference). A claim "
    "with K comparisons is decided by simultaneous intervals: each is a two-sided (1 - 2 alpha/K) paired t "
    "interval for the mean of d, i.e. each one-sided test runs at alpha/K (Bonferroni), alpha = {alpha:g} per "
    "direction. The effect is the geometric-mean loss ratio minus 1 (negative: the treatment's loss is lower) "
    "with that interval; Cohen's d_z = mean(d)/sd(d). An accuracy (higher is better) is compared as the "
    "difference d = a_treatment - a_reference instead. A comparison is *for* the claim when its interval lies "
    "inside the claimed region (superior: d < 0; non-inferior: d < log(1 + margin); equivalent: "
    "|d| < log(1 + margin)), *against* when it lies entirely outside it. Status: `supported` when every "
    "comparison is for, `not supported` when any is against (the opposite holds significantly), otherwise "
    "`inconclusive`. A comparison with a diverged run has no interval and is undecided.")


SCOPE_TEXT = (
    "**What this tests, and what it does not.** Every claim here is run on small *synthetic* federated problems "
    "(least squares, multinomial logistic regression, a two-layer tanh network; NumPy, exact gradients, N = 20 "
    "clients, T = 100 rounds), with the reference's FSLoRA and baselines (the FSLoRA paper's rules). The paper's "
    "own tables (GLUE with RoBERTa, commonsense reasoning with LLaMA-3.2-3B) are **not reproduced** here. A "
    "`supported` says the paper's statement holds on these problems at these settings, with the stated confidence; "
    "a `not supported` says its opposite holds significantly *here* - it is a finding about these problems, these "
    "sizes and this protocol, **not evidence against the paper's LLM results**; `inconclusive` says the seeds do "
    "not decide it (or an arm diverged, or did not train to a plateau by T). Each arm's client step was tuned on "
    "its own (rule below) on tuning seeds the comparisons never use; the optimiser is plain client SGD with server "
    "averaging (the paper's runs use client momentum/AdamW and a server AdamW step: not tested here).")

LLM_SCOPE_TEXT = (
    "**What this tests, and what it does not.** Claim 1 on one small instruction-tuning task with SmolLM2 through "
    "the LLM bridge, at the sizes below; not the paper's GLUE/RoBERTa or commonsense/LLaMA-3.2-3B tables. A "
    "`not supported` or `inconclusive` here is a statement about this run only.")


def steps_table(meta: dict, claims) -> str:
    """The console / markdown table of each arm's tuned client step per family.

    Parameters
    ----------
    meta : dict
        The run's metadata (its ``tuned_steps``).
    claims : list of theory.empirical.claims.EmpiricalClaim
        The claims run (their arms, in order).

    Returns
    -------
    str
        Empty if nothing was tuned.
    """
    tuned = meta.get("tuned_steps") or {}
    if not tuned:
        return ""
    families = list(tuned)
    labels = list(dict.fromkeys(lbl for f in families for lbl in tuned[f]))
    rows = [("arm (tuned client step)",) + tuple(families)]
    rows += [(lbl,) + tuple("not run" if tuned[f].get(lbl) is None else f"{tuned[f][lbl]:.4g}" for f in families)
             for lbl in labels]
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(f"{c:<{w[i]}}" for i, c in enumerate(r)) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n" + "\n".join(lines)


def tuning_markdown(entries) -> str:
    """Per family and arm: the grid, the chosen step and the tuning runs that chose it.

    Parameters
    ----------
    entries : list of dict
        Report entries (:func:`theory.empirical.claims.evaluate`), one per (claim, family).

    Returns
    -------
    str
        Markdown.
    """
    out, seen = [], set()
    for e in entries:
        for label, arm in e["evidence"]["arms"].items():
            t = arm.get("tuning")
            key = (e["family"], t["arm"] if t else label)
            if t is None or key in seen:
                continue
            seen.add(key)
            tried = "; ".join(
                f"{x['lr']:.3g}: " + ("stable, mean held-out " + f"{x['heldout_final_mean']:.4g}" if x["stable"] else
                                      "unstable (" + ", ".join(f"seed {r['seed']}: {r['reason'][:110]}" for r in x["runs"]
                                                               if not r["stable"]) + ")")
                for x in t["tried"])
            chosen = "not run (no stable step)" if t["chosen"] is None else f"**{t['chosen']:.4g}**"
            out.append(f"| {e['family']} | `{label}` | {t['grid'][0]:.3g} .. {t['grid'][-1]:.3g} | {chosen} | "
                       f"{_cell(tried)} |")
    if not out:
        return ""
    return ("| family | arm | grid (x2 steps) | chosen step | tried, top down: step: outcome on the tuning seeds |\n"
            "|---|---|---|---|---|\n" + "\n".join(out) + "\n")


def divergence_markdown(entries) -> str:
    """Every evaluation run that diverged (never counted as data), with its round and reason.

    Parameters
    ----------
    entries : list of dict
        Report entries (:func:`theory.empirical.claims.evaluate`), one per (claim, family).

    Returns
    -------
    str
        Markdown (empty if none diverged).
    """
    out, seen = [], set()
    for e in entries:
        seeds = e["evidence"]["seeds"]
        for label, arm in e["evidence"]["arms"].items():
            for seed, at, why in zip(seeds, arm["diverged_at"], arm.get("diverged_reason") or [None] * len(seeds)):
                if at is not None and (e["family"], label, seed) not in seen:
                    seen.add((e["family"], label, seed))
                    out.append(f"- {e['family']}, `{label}`, seed {seed}: round {at}: {why}")
    return "\n".join(out) + "\n" if out else "No evaluation run diverged.\n"


def horizon_markdown(entries) -> str:
    """The arms that had not trained to a plateau by T (their comparisons stay undecided).

    Parameters
    ----------
    entries : list of dict
        Report entries (:func:`theory.empirical.claims.evaluate`), one per (claim, family).

    Returns
    -------
    str
        Markdown (empty if every arm did).
    """
    out, seen = [], set()
    for e in entries:
        for label, arm in e["evidence"]["arms"].items():
            h = arm.get("horizon")
            if h and h.get("checked") and not h["ok"] and (e["family"], label) not in seen:
                seen.add((e["family"], label))
                out.append(f"- {e['family']}, `{label}`: {h['reason']}")
    return "\n".join(out) + "\n" if out else "Every arm trained to a plateau by round T.\n"


def _pct(x):
    return f"{100 * x:+.1f}%"


def effect_text(c: dict) -> str:
    """A comparison's effect and interval in short.

    Parameters
    ----------
    c : dict
        A :func:`theory.empirical.stats.compare` result.

    Returns
    -------
    str
        "-21.1% [-29.4%, -11.7%]" (losses), "+0.120 [+0.050, +0.190]" (accuracies), or the reason it
        has no interval.
    """
    if "effect" not in c:
        return c.get("reason", "undecided")
    fmt = _pct if c["better"] == "lower" else (lambda x: f"{x:+.3f}")
    lo, hi = c["effect_ci"]
    return f"{fmt(c['effect'])} [{fmt(lo)}, {fmt(hi)}]"


def table(entries) -> str:
    """The fixed-width console table: claim, family, status, the weakest comparison.

    Parameters
    ----------
    entries : list of dict
        Report entries (:func:`theory.empirical.claims.evaluate`), one per (claim, family).

    Returns
    -------
    str
    """
    rows = [("claim", "family", "status", "weakest comparison: effect [simultaneous CI] (primary metric)")]
    rows += [(e["claim"], e["family"], e["status"], e["key"]) for e in entries]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def report_json(entries, meta: dict) -> dict:
    """The content of report.json, in verify's shape.

    Parameters
    ----------
    entries : list of dict
        Report entries (:func:`theory.empirical.claims.evaluate`), one per (claim, family).
    meta : dict
        The run's metadata.

    Returns
    -------
    dict
        ``{"claims": [{id, claim, family, title, statement, method, status, metric, key, evidence}],
        "meta": meta}``.
    """
    keep = ("id", "claim", "family", "title", "statement", "method", "status", "metric", "key", "evidence")
    return {"claims": [{k: e[k] for k in keep} for e in entries], "meta": meta}


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def _verdict_cell(c: dict) -> str:
    """The verdict, with the reason when an interval exists but was not allowed to decide."""
    return c["verdict"] + (f": {_cell(c['reason'])}" if "reason" in c and "effect" in c else "")


def summary_table(entries) -> str:
    """The markdown summary: claim x family -> status and the weakest comparison's effect [CI].

    Parameters
    ----------
    entries : list of dict
        Report entries (:func:`theory.empirical.claims.evaluate`), one per (claim, family).

    Returns
    -------
    str
    """
    families = list(dict.fromkeys(e["family"] for e in entries))
    claims = list(dict.fromkeys(e["claim"] for e in entries))
    by = {(e["claim"], e["family"]): e for e in entries}
    out = "| claim | " + " | ".join(families) + " |\n|---|" + "---|" * len(families) + "\n"
    for c in claims:
        title = next(e["title"] for e in entries if e["claim"] == c)
        cells = []
        for f in families:
            e = by.get((c, f))
            cells.append("" if e is None else f"**{e['status']}**<br>{_cell(e['key'])}")
        out += f"| {c}: {title} | " + " | ".join(cells) + " |\n"
    return out


def report_markdown(entries, meta: dict, claims) -> str:
    """The content of report.md: scope, summary, statistics, one section per claim, steps, horizons, divergences.

    Parameters
    ----------
    entries : list of dict
        Report entries (:func:`theory.empirical.claims.evaluate`), one per (claim, family).
    meta : dict
        The run's metadata.
    claims : list of theory.empirical.claims.EmpiricalClaim
        The claims run.

    Returns
    -------
    str
    """
    out = io.StringIO()
    counts = {s: sum(e["status"] == s for e in entries) for s in STATUSES}
    out.write(f"# fslora claims{' --llm' if meta.get('llm') else ''}\n\n")
    out.write((LLM_SCOPE_TEXT if meta.get("llm") else SCOPE_TEXT) + "\n\n")
    impl = meta.get("implementation")
    if impl:
        out.write(f"Implementation under test (every FSLoRA arm): `{impl['fslora']}`"
                  + ("" if impl.get("target") else " (the reference)") + "; baselines: "
                  + ", ".join(f"`{v}`" for v in impl.get("baselines", {}).values()) + ".\n\n")
    if meta.get("step_rule"):
        out.write(f"Step rule: {meta['step_rule']}. Divergence: a non-finite loss, a training or held-out loss above "
                  f"{meta.get('divergence_multiple', 10):g}x its round-0 value at an evaluation, or a numerical failure "
                  "(e.g. an SVD that does not converge) ends that run only; a diverged run never counts as data "
                  "(its comparisons have no interval).\n\n")
    out.write(f"Mode: {meta.get('mode', 'full')}; {len(meta.get('seeds', []))} seeds per arm; families: "
              f"{', '.join(meta.get('families', []))}; " + ", ".join(f"{v} {k}" for k, v in counts.items())
              + f"; {meta.get('seconds', 0):.1f} s"
              + (f" (the runs themselves: {meta['total_run_seconds']:.0f} s)" if "total_run_seconds" in meta else "")
              + ".\n\n")
    primary = entries[0]["evidence"]["metrics"] if entries else {}
    if primary:
        first = next(iter(primary))
        out.write(f"Status on the primary metric, {first}: {primary[first]}. Each cell: status, then the comparison "
                  "closest to failing the claim with its effect and simultaneous confidence interval.\n\n")
    out.write(summary_table(entries) + "\n")
    out.write("## Statistics\n\n" + STATISTICS_TEXT.format(alpha=meta.get("alpha", ALPHA)) + "\n\n")
    for claim in claims:
        mine = [e for e in entries if e["claim"] == claim.id]
        if not mine:
            continue
        out.write(f"## {claim.id}: {claim.title}\n\n{claim.statement}\n\n")
        out.write(f"- Test: {mine[0]['method']}.\n- Equal-cost axis: {claim.axis_text}.\n")
        if claim.hypothesis.kind != "superior":
            out.write(f"- Margin: {claim.hypothesis.margin:.0%} of the reference's loss (log-ratio band "
                      f"+-{np.log1p(claim.hypothesis.margin):.4f}).\n")
        out.write("- Arms: " + "; ".join(f"`{a.label}` = {a.describe()}" for a in claim.arms) + ".\n")
        if claim.context:
            out.write("- Shown for context, not compared: " + ", ".join(f"`{c}`" for c in claim.context) + ".\n")
        out.write(f"- Figure: `{claim.id}.png`.\n\n")
        out.write("| family | metric | comparison | treatment mean | reference mean | effect [CI] | d_z | treatment "
                  "better | p of the claim (Bonferroni) | verdict |\n|---|---|---|---|---|---|---|---|---|---|\n")
        for e in mine:
            for metric, res in e["evidence"]["by_metric"].items():
                for c in res["comparisons"]:
                    dz = "" if c.get("cohens_dz") is None else f"{c['cohens_dz']:.2f}"
                    p = "" if c.get("p_value_adjusted") is None else f"{c['p_value_adjusted']:.2g}"
                    tm = "" if "treatment_mean" not in c else f"{c['treatment_mean']:.4g}"
                    rm = "" if "reference_mean" not in c else f"{c['reference_mean']:.4g}"
                    wins = "" if "treatment_better_seeds" not in c else f"{c['treatment_better_seeds']}/{c['n_seeds']}"
                    out.write(f"| {e['family']} | {metric} | {c['treatment']} vs {c['reference']} | {tm} | {rm} | "
                              f"{_cell(effect_text(c))} | {dz} | {wins} | {p} | {_verdict_cell(c)} |\n")
        out.write("\n" + "".join(f"- {e['family']}: **{e['status']}** on {e['metric']}; "
                                 + "; ".join(f"{m}: {r['status']}" for m, r in e["evidence"]["by_metric"].items()
                                             if m != e["metric"]) + "\n" for e in mine) + "\n")
    tuning_md = tuning_markdown(entries)
    if tuning_md:
        out.write("## Tuned steps\n\n" + (meta.get("step_rule", "") + ".\n\n" if meta.get("step_rule") else "")
                  + tuning_md + "\n")
    if not meta.get("llm"):
        out.write("## Horizon check\n\n" + horizon_markdown(entries) + "\n")
    out.write("## Diverged runs\n\n" + divergence_markdown(entries) + "\n")
    settings = {e["family"]: e["evidence"]["settings"] for e in entries}
    out.write("## Run settings\n\n" + "".join(f"- {f}: " + ", ".join(f"{k} = {v}" for k, v in s.items()) + "\n"
                                              for f, s in settings.items()))
    out.write("\nEvery number is in `report.json`; every run's curves are in `runs.json`.\n")
    return out.getvalue()


# ---- figures ----------------------------------------------------------------------------------
def plot_claim(path, claim, entries, runs_by_family, axis_label: str | None = None) -> None:
    """Write one PNG for a claim: a row per family.

    Left, each arm's primary metric (mean over seeds with a 95 % pointwise t band) against rounds or
    uploaded floats; right, every comparison's effect with its simultaneous interval, the claimed
    region shaded.

    Parameters
    ----------
    path : str or os.PathLike
        The PNG written.
    claim : theory.empirical.claims.EmpiricalClaim
        The claim.
    entries : list of dict
        Its report entries, one per family.
    runs_by_family : dict
        ``{family: {arm key: [RunResult per seed]}}``.
    axis_label : str or None, optional
        The x-axis label of the curves (default: by the claim's axis).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fslora_ref import plotting_style as ps
    fig, axes = ps.figure(2, len(entries), size=(10, 3.6 * len(entries)), squeeze=False, layout=None,
                          gridspec_kw={"width_ratios": [1.25, 1]})
    for row, e in zip(axes, entries):
        _plot_curves(row[0], claim, e, runs_by_family[e["family"]], axis_label)
        _plot_forest(row[1], claim, e)
    fig.suptitle(f"{claim.id}: {claim.title}", fontsize=11)
    fig.tight_layout()
    write_figure(path, fig, dpi=85)
    plt.close(fig)


def arm_label(arm) -> str:
    """An arm's label with its algorithm spelled as the paper writes it (``fslora r=16`` -> ``FSLoRA r=16``).

    Parameters
    ----------
    arm : Arm

    Returns
    -------
    str
    """
    from fslora_ref import plotting_style as ps
    if arm.label.lower().startswith(arm.algorithm.lower()):
        return ps.label(arm.algorithm) + arm.label[len(arm.algorithm):]
    return arm.label


def _plot_curves(ax, claim, entry, runs, axis_label):
    from fslora_ref import plotting_style as ps
    metric = entry["metric"]
    styles = ps.series_styles([arm.algorithm for arm in claim.arms])
    curves = []
    for i, arm in enumerate(claim.arms):
        results = [r for r in runs[arm.key]]
        finite = [r for r in results if r.diverged_at is None]
        if not finite:
            continue
        xs = np.array(finite[0].upload_floats if claim.axis == "upload" else finite[0].rounds, dtype=float)
        vals = np.array([[np.nan if v is None else v for v in r.metrics[metric]] for r in finite], dtype=float)
        keep = ~np.all(np.isnan(vals), axis=0)
        curves.append((i, arm, xs[keep], *mean_band(vals[:, keep]), len(results) - len(finite)))
    means = np.concatenate([c[3] for c in curves]) if curves else np.ones(1)
    # a loss that falls by more than 4x hides the differences at the end on a linear axis
    log = bool(np.nanmin(means) > 0 and np.nanmax(means) / np.nanmin(means) > 4)
    floor = 0.5 * np.nanmin(means) if log else -np.inf
    for i, arm, x, mean, lo, hi, diverged in curves:
        style = dict(styles[i])
        if arm.label in claim.context:   # shown, not compared
            style["linestyle"] = "--"
        style["marker"] = "o" if x.size <= 3 else None
        ax.plot(x, mean, ms=4, label=arm_label(arm) + (f" ({diverged} diverged)" if diverged else ""), **style)
        ax.fill_between(x, np.maximum(lo, floor), hi, color=style["color"], alpha=0.15, lw=0)
    if log:
        from matplotlib.ticker import FormatStrFormatter
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
        ax.tick_params(axis="y", which="minor", labelsize=7)
    xlabel = axis_label or ("cumulative uploaded floats (all clients)" if claim.axis == "upload" else "round t")
    ax.set(xlabel=xlabel, ylabel=f"{metric} loss (mean, 95% band{', log scale' if log else ''})",
           title=f"{entry['family']}: {len(entry['evidence']['seeds'])} seeds (bands: across seeds, unpaired)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def _plot_forest(ax, claim, entry):
    from fslora_ref import plotting_style as ps
    by_metric = entry["evidence"]["by_metric"]
    primary = by_metric[entry["metric"]]["comparisons"][0]["better"]
    # metrics improving in the other direction (an accuracy next to a loss) would need a flipped
    # claimed region on the same axis: they are in the tables only
    names = [m for m, r in by_metric.items() if r["comparisons"][0]["better"] == primary]
    labels = [f"{c['treatment']}\nvs {c['reference']}" for c in by_metric[names[0]]["comparisons"]]
    log_scale = primary == "lower"
    for j, name in enumerate(names):
        for i, c in enumerate(by_metric[name]["comparisons"]):
            if "effect" not in c:
                continue
            y = i + (j - (len(names) - 1) / 2) * 0.22
            scale = 100.0 if c["better"] == "lower" else 1.0
            lo, hi = c["effect_ci"]
            color = ps.series_color(j)
            ax.errorbar(c["effect"] * scale, y, xerr=[[(c["effect"] - lo) * scale], [(hi - c["effect"]) * scale]],
                        fmt="o" if j == 0 else "s", mfc=color if j == 0 else "white", color=color, capsize=3,
                        label=name if i == 0 else None)
    first = by_metric[names[0]]["comparisons"][0]
    low, high = claimed_region(Metric(first["metric"], "", first["better"]), Hypothesis(first["hypothesis"], first["margin"]))
    to_axis = (lambda d: 100 * np.expm1(d)) if log_scale else (lambda d: d)
    # the view always shows 0 and the region's finite edges, whatever side the intervals are on
    edges = [to_axis(b) for b in (low, high) if np.isfinite(b)] + [0.0, *ax.get_xlim()]
    pad = 0.05 * (max(edges) - min(edges) or 1.0)
    xmin, xmax = min(edges) - pad, max(edges) + pad
    ax.axvspan(to_axis(low) if np.isfinite(low) else xmin, to_axis(high) if np.isfinite(high) else xmax,
               color="green", alpha=0.08, label="claimed region")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlim(xmin, xmax)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    level = confidence_level(entry["evidence"]["n_comparisons"], entry["evidence"]["alpha"])
    unit = "relative loss difference (%)" if log_scale else "difference"
    ax.set(xlabel=f"{unit}, simultaneous {level:.1%} CI", title=f"{entry['family']}: {entry['status']}")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="best")


def write_all(out_dir, entries, meta, claims, runs_by_family, axis_label=None) -> list:
    """Write report.json, report.md and one ``<claim>.png`` per claim with entries into ``out_dir``.

    Parameters
    ----------
    out_dir : str
        The output directory (already prepared).
    entries : list of dict
        Report entries (:func:`theory.empirical.claims.evaluate`), one per (claim, family).
    meta : dict
        The run's metadata.
    claims : list of theory.empirical.claims.EmpiricalClaim
        The claims run.
    runs_by_family : dict
        ``{family: {arm key: [RunResult per seed]}}``.
    axis_label : str or None, optional
        The x-axis label of the curves (default: by the claim's axis).

    Returns
    -------
    list of str
        The paths written.
    """
    paths = []
    write_json(os.path.join(out_dir, "report.json"), report_json(entries, meta))
    atomic_write_bytes(os.path.join(out_dir, "report.md"), report_markdown(entries, meta, claims).encode())
    paths += [os.path.join(out_dir, "report.json"), os.path.join(out_dir, "report.md")]
    for claim in claims:
        mine = [e for e in entries if e["claim"] == claim.id]
        if mine:
            png = os.path.join(out_dir, f"{claim.id}.png")
            plot_claim(png, claim, mine, runs_by_family, axis_label)
            paths.append(png)
    return paths

