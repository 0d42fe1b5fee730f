"""``report.json`` and ``report.md`` of ``fslora claims --llm``: what is and is not tested, the declared
plan, the tuning that chose each step, every seed's numbers, the look's tests and the status."""
from __future__ import annotations

import math
import os
import statistics

from fslora_ref.outputs import atomic_write_bytes, write_json

SCOPE = ("Claim 1 of the paper (FSLoRA reaches a lower loss than HetLoRA, FlexLoRA and FLoRA at the paper's "
         "budgets) on a small real LM (SmolLM2-135M by default) fine-tuned on four synthetic instruction families. "
         "It does not reproduce the paper's GLUE/RoBERTa or commonsense/LLaMA-3.2-3B tables, and a status here is "
         "evidence about this small setting only.")


def summary(seed_runs: dict, names) -> dict:
    """Per algorithm, the mean over the complete seeds of the final held-out loss and accuracies.

    Parameters
    ----------
    seed_runs : dict
        ``{seed: {algorithm: run}}``.
    names : list of str

    Returns
    -------
    dict
        ``{algorithm: {"heldout", "accuracy_mean", "accuracy": {family: mean}, "seconds"}}`` (None without seeds).
    """
    out = {}
    for a in names:
        runs = [seed_runs[s][a] for s in sorted(seed_runs) if seed_runs[s][a]["diverged"] is None]
        if not runs:
            out[a] = None
            continue
        fams = sorted(runs[0]["accuracy"])
        acc = {f: statistics.fmean(r["accuracy"][f] for r in runs) for f in fams}
        out[a] = {"heldout": statistics.fmean(r["heldout"][-1] for r in runs),
                  "accuracy_mean": statistics.fmean(acc.values()) if acc else None, "accuracy": acc,
                  "seconds": statistics.fmean(r["seconds"] for r in runs), "n": len(runs)}
    return out


def paired_differences(seed_runs: dict, names) -> dict:
    """Per baseline, fslora's paired differences over the seeds where neither run diverged.

    Parameters
    ----------
    seed_runs : dict
        ``{seed: {algorithm: run}}``.
    names : list of str

    Returns
    -------
    dict
        ``{baseline: {"loss_ratio", "d_min", "d_max", "accuracy", "acc_min", "acc_max"}}``: the
        geometric-mean loss ratio - 1, the range of d = log(L_fslora / L_baseline), the mean accuracy
        difference (mean over families) and its range.
    """
    out = {}
    for b in (n for n in names if n != "fslora"):
        pairs = [(r["fslora"], r[b]) for r in seed_runs.values() if not (r["fslora"]["diverged"] or r[b]["diverged"])]
        if not pairs:
            continue
        d = [math.log(f["heldout"][-1] / x["heldout"][-1]) for f, x in pairs]
        acc = [statistics.fmean(f["accuracy"].values()) - statistics.fmean(x["accuracy"].values()) for f, x in pairs]
        out[b] = {"loss_ratio": math.exp(statistics.fmean(d)) - 1, "d_min": min(d), "d_max": max(d),
                  "accuracy": statistics.fmean(acc), "acc_min": min(acc), "acc_max": max(acc)}
    return out


def write_report(out: str, config: dict, steps, tuning: dict, seed_runs: dict, state: dict, names, *,
                 seconds: float) -> list:
    """Write report.json and report.md into ``out``.

    Parameters
    ----------
    out : str
    config : dict
        The declared config (recipe, plan, grid).
    steps : dict or None
        :func:`llm_bridge.claims.choose_steps`'s result (None while the tuning is unfinished).
    tuning : dict
        ``{seed: {"algorithm@lr": run}}``.
    seed_runs : dict
        ``{seed: {algorithm: run}}`` of the complete evaluation seeds.
    state : dict
        The plan's status (:func:`llm_bridge.claims.status`).
    names : list of str
    seconds : float
        This invocation's wall time.

    Returns
    -------
    list of str
        The files written.
    """
    per_seed_cost = {s: sum(r["seconds"] for r in runs.values()) for s, runs in seed_runs.items()}
    data = {"scope": SCOPE, "status": state["status"], "reason": state["reason"], "plan_state": state,
            "config": config, "tuning": steps, "seeds": sorted(seed_runs), "summary": summary(seed_runs, names),
            "paired_differences": paired_differences(seed_runs, names),
            "seed_seconds": {str(s): v for s, v in per_seed_cost.items()},
            "tuning_seconds": sum(r["seconds"] for runs in tuning.values() for r in runs.values()),
            "invocation_seconds": seconds}
    write_json(os.path.join(out, "report.json"), data)
    atomic_write_bytes(os.path.join(out, "report.md"), markdown(data, seed_runs, tuning, names).encode())
    return [os.path.join(out, "report.json"), os.path.join(out, "report.md")]


def markdown(data: dict, seed_runs: dict, tuning: dict, names) -> str:
    """The report as Markdown.

    Parameters
    ----------
    data : dict
        report.json's content.
    seed_runs : dict
        ``{seed: {algorithm: run}}``.
    tuning : dict
        ``{seed: {"algorithm@lr": run}}``.
    names : list of str

    Returns
    -------
    str
    """
    c, plan, st = data["config"], data["config"]["plan"], data["plan_state"]
    lines = ["# `fslora claims --llm`: claim 1 as a sequential experiment", "", data["scope"], "",
             f"**Status: `{data['status']}`** after {len(seed_runs)} evaluation seeds ({data['reason']}).", "",
             "## Declared plan (written to plan.json before any run)", "",
             f"- Pilot {plan['pilot']} seeds, then {plan['step']} at a time up to {plan['max_seeds']}; looks at "
             f"{plan['looks']} seeds.",
             f"- Level spent per look ({plan['spending']}, overall alpha = {plan['alpha']}): "
             + ", ".join(f"{v:.4g}" for v in plan["levels"]) + ".",
             "- Per seed and baseline d = log(L_fslora / L_baseline) of the final held-out loss. Intersection-union "
             "test: supported when every one-sided paired t test (H0: mean d >= 0) rejects at the look's level "
             "(no Bonferroni across baselines); not supported when some baseline is significantly better "
             "(reverse tests at the look's level / K); otherwise inconclusive, continue or (at the maximum) stop.",
             "- Sources: Berger (1982) Technometrics 24:295-300 (intersection-union tests); Lan & DeMets (1983) "
             "Biometrika 70:659-663 (spending functions); each look tested at its own increment, so the error over "
             "all looks is at most alpha by the union bound (conservative).", "",
             "## Setting", "",
             f"model {c['model']}; r = {c['rank']} (alpha {c['lora_alpha']}) on {', '.join(c['targets'])}; N = "
             f"{c['clients']} clients, k_i/r = {c['ratios']}; T = {c['rounds']} rounds of H = {c['local_steps']} "
             f"{c['client_optimizer']} steps (batch {c['batch_size']}); {c['examples_per_client']} examples per client "
             f"of {', '.join(c['families'])}, Dirichlet({c['dirichlet_alpha']}); {c['eval_per_family']} held-out "
             "prompts per family.", "",
             "## Step tuning", "",
             f"Rule: {c['tuning_rule']}. Grid {c['lr_grid']}, tuning seeds {c['tuning_seeds']}, tuning runs of "
             f"{c['tuning_rounds'] or c['rounds']} rounds (evaluation runs: {c['rounds']}).", "",
             "| algorithm | " + " | ".join(f"lr {v:g}" for v in c["lr_grid"]) + " | chosen |",
             "|---|" + "---|" * (len(c["lr_grid"]) + 1)]
    for a in names:
        row = []
        for lr in c["lr_grid"]:
            runs = [r[f"{a}@{lr!r}"] for r in tuning.values() if f"{a}@{lr!r}" in r]
            row.append("not run" if len(runs) < len(c["tuning_seeds"]) else "diverged" if any(r["diverged"] for r in runs)
                       else f"{statistics.fmean(r['heldout'][-1] for r in runs):.4f}")
        chosen = f"{data['tuning'][a]['chosen']:g}" if data["tuning"] else "(unfinished)"
        if data["tuning"] and data["tuning"][a].get("edge"):
            chosen += " (grid edge)"
        lines.append(f"| {a} | " + " | ".join(row) + f" | {chosen} |")
    at_edge = [a for a in names if data["tuning"] and data["tuning"][a].get("edge")]
    if at_edge:
        lines += ["", f"At the grid's edge: {', '.join(at_edge)}. Steps beyond the grid were not tried, so the rule's "
                  "choice need not be the algorithm's best step; a grid extended past that edge tests it."]
    lines += ["", "## Per seed (final held-out loss; exact-match accuracy, mean over families)", "",
              "| seed | " + " | ".join(names) + " | seconds |", "|---|" + "---|" * (len(names) + 1)]
    for s in sorted(seed_runs):
        cells = []
        for a in names:
            r = seed_runs[s][a]
            cells.append("diverged" if r["diverged"] else
                         f"{r['heldout'][-1]:.4f}; {statistics.fmean(r['accuracy'].values()):.1%}")
        lines.append(f"| {s} | " + " | ".join(cells) + f" | {data['seed_seconds'][str(s)]:.0f} |")
    summ = data["summary"]
    if seed_runs:
        fams = sorted(next(iter(seed_runs.values()))[names[0]]["accuracy"] or [])
        lines += ["", "## Means over the seeds", "", "| algorithm | held-out loss | accuracy | "
                  + " | ".join(fams) + " |", "|---|---|---|" + "---|" * len(fams)]
        for a in names:
            m = summ[a]
            if m is None:
                lines.append(f"| {a} | diverged | | " + " | " * len(fams))
                continue
            lines.append(f"| {a} | {m['heldout']:.4f} | {m['accuracy_mean']:.1%} | "
                         + " | ".join(f"{m['accuracy'][f]:.1%}" for f in fams) + " |")
        lines += ["", "Paired differences fslora - baseline over the seeds (mean, and the range over seeds): "
                  "held-out loss ratio exp(mean log ratio) - 1; accuracy in points.", "",
                  "| baseline | held-out loss | accuracy (mean over families) |", "|---|---|---|"]
        for b, diff in paired_differences(seed_runs, names).items():
            lines.append(f"| {b} | {diff['loss_ratio']:+.1%} (d from {diff['d_min']:+.3f} to {diff['d_max']:+.3f}) | "
                         f"{100 * diff['accuracy']:+.1f} points ({100 * diff['acc_min']:+.1f} to {100 * diff['acc_max']:+.1f}) |")
    if st.get("iut"):
        lines += ["", f"## Look {st['look']} ({plan['looks'][st['look'] - 1]} seeds, level {st['level']:.4g})", "",
                  "| baseline | p (fslora better) | p (baseline better) |", "|---|---|---|"]
        for b, p in st["iut"]["p_values"].items():
            lines.append(f"| {b} | {p:.4g} | {st['reverse']['p_values'][b]:.4g} |")
        lines += ["", f"Intersection-union p = {st['iut']['p_iut']:.4g} (the largest); reverse tests at "
                      f"{st['reverse']['level']:.4g}."]
    lines += ["", f"Cost: tuning {data['tuning_seconds']:.0f} s of runs; per evaluation seed "
              + ", ".join(f"seed {s}: {v:.0f} s" for s, v in data["seed_seconds"].items())
              + f"; this invocation {data['invocation_seconds']:.0f} s wall.", ""]
    return "\n".join(lines)
