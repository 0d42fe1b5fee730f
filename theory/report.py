"""The verify report: console table, report.md, report.json and the two plots (written atomically)."""
from __future__ import annotations

import io
import json

import numpy as np

from fslora_ref.federation import atomic_write_bytes

from .result import VIOLATED


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


def table(results) -> str:
    """Fixed-width table: claim, method, status, key number."""
    rows = [("claim", "method", "status", "key number")]
    rows += [(c.id, c.method[:46], r.status, r.key) for c, r, _ in results]
    w = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}" for a, b, c, d in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def report_json(results, meta: dict) -> dict:
    return _jsonable({"claims": [{"id": c.id, "statement": c.statement, "method": c.method, "status": r.status,
                                  "key": r.key, "seconds": round(sec, 3), "evidence": r.evidence}
                                 for c, r, sec in results], "meta": meta})


def closing_note(results) -> str:
    by_id = {c.id: r for c, r, _ in results}
    parts = []
    thm = by_id.get("thm4.4.bound")
    if thm is not None and "tightness_min" in thm.evidence:
        parts.append(f"Theorem 4.4 holds on every configuration run within its step-size condition "
                     f"({thm.evidence['settings_within_condition']} configurations, {thm.evidence['seeds']} seeds each); "
                     f"tightness (95% UCB of the LHS / RHS) ranges from {thm.evidence['tightness_min']:.2e} "
                     f"to {thm.evidence['tightness_max']:.2e}." if thm.status != VIOLATED else
                     f"Theorem 4.4 is VIOLATED: {thm.key}.")
    cor = by_id.get("cor4.5.ratio_dependence")
    if cor is not None and "fitted_exponent" in cor.evidence:
        lo, hi = cor.evidence["ci95"]
        parts.append(f"Corollary 4.5: fitted exponent of the average squared gradient norm in sqrt(L-tilde) is "
                     f"{cor.evidence['fitted_exponent']:.2f} (95% CI [{lo:.2f}, {hi:.2f}]) against the predicted 1 "
                     f"({cor.evidence['direction']}).")
    return " ".join(parts)


def _cell(text: str) -> str:
    """Markdown table cell: norms' pipes escaped so they do not split the row."""
    return str(text).replace("|", "\\|")


def report_markdown(results, meta: dict) -> str:
    out = io.StringIO()
    counts = {}
    for _, r, _ in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    out.write("# fslora verify\n\n")
    out.write(f"Mode: {'quick' if meta.get('quick') else 'full'}; {len(results)} claims; "
              + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + f"; {meta.get('seconds', 0):.1f} s.\n\n")
    out.write("Constants (L, sigma_s^2, sigma_g^2, c_h, delta_h^2) are not global for bilinear LoRA: each is the "
              "maximum over the points the runs actually visit (every client at every server iterate and at its own "
              "round end point, over all seeds), computed exactly at those points (exact Hessians, all sketches "
              "enumerated, exact minibatch variance). f* is the exact unconstrained least-squares minimum (a lower "
              "bound of f^S) or 0 for cross-entropy. Scope: the Hessian-based checks (Proposition D.4, L) and the "
              "Theorem 4.4 grid use the single-layer families (least squares, logistic), for which Hessian-vector "
              "products are exact; the two-layer family is not covered. Corollary 4.5 is fitted on least squares.\n\n")
    out.write("| claim | statement | method | status | key number |\n|---|---|---|---|---|\n")
    for c, r, _ in results:
        out.write(f"| `{c.id}` | {_cell(c.statement)} | {_cell(c.method)} | **{r.status}** | {_cell(r.key)} |\n")
    by_id = {c.id: r for c, r, _ in results}
    thm = by_id.get("thm4.4.bound")
    if thm is not None and "settings" in thm.evidence:
        out.write("\n## Theorem 4.4 per configuration\n\n| config | family | N | H | ratios | het | batch | gamma | "
                  "gamma_max | LHS mean | LHS UCB95 | RHS | optimisation term share | LHS/RHS |\n"
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
        for s in thm.evidence["settings"]:
            tight = s["tightness"]
            out.write(f"| {s['setting']} | {s['family']} | {s['N']} | {s['H']} | {s['ratios']} | {s['heterogeneity']} | "
                      f"{s['batch_size']} | {s['gamma']:.3g} | {s['gamma_max']:.3g} | {s['lhs_mean']:.3g} | "
                      f"{s['lhs_ucb95']:.3g} | {s['rhs']:.3g} | {s['rhs_terms']['optimisation'] / s['rhs']:.0%} | {tight:.2e} |\n"
                      if tight is not None else
                      f"| {s['setting']} | {s['family']} | | | | | | {s['gamma']:.3g} | | | | | | diverged |\n")
        out.write("\nThe step-size condition forces small steps, so over T rounds the iterates move little and the "
                  "RHS is dominated by its optimisation term 4(f^S(X^0) - f*)/(gamma T H): that term is where the "
                  "slack (tightness) comes from.\n")
        first = thm.evidence["settings"][0]
        if first.get("constants"):
            out.write(f"\nMeasured constants for `{first['setting']}` (how each was obtained):\n\n"
                      "| constant | value | method | over |\n|---|---|---|---|\n")
            for name, c in first["constants"].items():
                out.write(f"| {name} | {c['value']:.4g} | {c['method']} | {_cell(c['note'])} |\n")
    cor = by_id.get("cor4.5.ratio_dependence")
    if cor is not None and "settings" in cor.evidence:
        out.write(f"\n## Corollary 4.5 per sketching ratio\n\nL measured on a k = r pilot run: "
                  f"{cor.evidence['L_region']:.4g}. {cor.evidence['note']}.\n\n"
                  "| k/r | L-tilde | gamma = sqrt(N/(T H L-tilde)) | Theorem 4.4 limit | LHS mean |\n|---|---|---|---|---|\n")
        for r in cor.evidence["settings"]:
            out.write(f"| {r['ratio']:g} | {r['L_tilde']:.4g} | {r['gamma']:.4g} | {r['gamma_max_theorem']:.4g} | "
                      f"{r['lhs_mean']:.4g} |\n")
        lo, hi = cor.evidence["ci95"]
        out.write(f"\nFitted exponent in sqrt(L-tilde): {cor.evidence['fitted_exponent']:.3f} (95% bootstrap CI "
                  f"[{lo:.3f}, {hi:.3f}]); predicted by the bound: 1.\n")
    out_lim = by_id.get("thm4.4.above_limit")
    if out_lim is not None:
        out.write(f"\nAbove the step-size limit ({out_lim.evidence.get('setting')}): {out_lim.key}.\n")
    violated = [(c, r) for c, r, _ in results if r.status == VIOLATED]
    if violated:
        out.write("\n## Counterexamples\n\n")
        for c, r in violated:
            out.write(f"### `{c.id}`\n\n{c.statement}\n\n```json\n{json.dumps(_jsonable(r.evidence), indent=1)[:4000]}\n```\n\n")
    out.write("\n## Closing note\n\n" + closing_note(results) + "\n")
    out.write("\nPlots: `lhs_vs_rhs.png` (Theorem 4.4 over T), `rate_vs_ratio.png` (Corollary 4.5). "
              "Every number above is in `report.json`.\n")
    return out.getvalue()


def plot_lhs_rhs(path, outcome):
    """LHS (mean over seeds of (1/T) sum_t ||grad f^S||^2) and the RHS against T."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    T = np.arange(1, len(outcome.lhs_curve) + 1)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(T, outcome.lhs_curve, "o-", label="LHS: (1/T) sum E||grad f^S(X^t)||^2 (mean over seeds)")
    ax.semilogy(T, outcome.rhs_curve, "s--", label="RHS of Theorem 4.4 (measured constants)")
    ax.set_xlabel("rounds T")
    ax.set_ylabel("average squared gradient norm")
    ax.set_title(f"Theorem 4.4 on {outcome.setting.name} (gamma={outcome.lr:.3g}, {outcome.seeds} seeds)")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_rate(path, cor_data, cor_result):
    """Average squared gradient norm against sqrt(L-tilde) (log-log) with the fitted and predicted slopes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows, xs = cor_data["rows"], np.array(cor_data["xs"])
    ys = np.log([r["lhs_mean"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(np.exp(xs), np.exp(ys), "o", label="measured (mean over seeds)")
    for x, y, r in zip(xs, ys, rows):
        ax.annotate(f"k/r={r['ratio']:g}", (np.exp(x), np.exp(y)), fontsize=7, xytext=(4, 4), textcoords="offset points")
    slope = cor_result.evidence["fitted_exponent"]
    grid = np.linspace(xs.min(), xs.max(), 20)
    c = np.mean(ys - slope * xs)
    ax.plot(np.exp(grid), np.exp(c + slope * grid), "-", label=f"fitted exponent {slope:.2f}")
    ax.plot(np.exp(grid), np.exp(ys[0] + 1.0 * (grid - xs[0])), "--", label="predicted exponent 1 (Corollary 4.5)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sqrt(L-tilde)  (smaller sketching ratio to the right)")
    ax.set_ylabel("(1/T) sum_t ||grad f^S(X^t)||^2")
    ax.set_title("Corollary 4.5: rate vs sketching ratio")
    ax.legend(fontsize=7)
    _save(fig, path)


def _save(fig, path):
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_all(out_dir, results, ctx, meta: dict):
    """report.json, report.md and the plots into out_dir; returns the written paths."""
    import os
    paths = {name: os.path.join(out_dir, name) for name in ("report.json", "report.md", "lhs_vs_rhs.png", "rate_vs_ratio.png")}
    atomic_write_bytes(paths["report.json"], json.dumps(report_json(results, meta), indent=1).encode())
    atomic_write_bytes(paths["report.md"], report_markdown(results, meta).encode())
    if ctx._grid_outcomes:
        plot_lhs_rhs(paths["lhs_vs_rhs.png"], ctx._grid_outcomes[0])
    if ctx._corollary and ctx._corollary[1]:
        plot_rate(paths["rate_vs_ratio.png"], ctx._corollary[1], ctx._corollary[0])
    return [p for p in paths.values() if os.path.exists(p)]
