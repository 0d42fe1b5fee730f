"""The before/after table ``fslora finetune`` prints at the end of a run."""
from __future__ import annotations


def summary(history) -> str:
    """The before/after table (with majority-class and chance rates for commonsense data).

    Parameters
    ----------
    history : dict
        A finetune run's history (:func:`llm_bridge.finetune.finetune`), with at least one
        evaluation.

    Returns
    -------
    str
        Accuracy per family before and after, per-client costs of the last round, the adapter
        and the wall time, one line each.
    """
    first, last = history["eval"][0], history["eval"][-1]
    rates = history["data"].get("reference_rates") or {}
    extra = f"{'majority':>10}{'chance':>8}" if rates else ""
    scoring = history["data"].get("scoring", "exact match")
    lines = [f"{'family':<14}{'before':>8}{'after':>8}{extra}   ({scoring}, {sum(first['n'].values())} held-out "
             f"prompts, round {first['round']} -> {last['round']})"]
    for fam in first["accuracy"]:
        row = f"{fam:<14}{100 * first['accuracy'][fam]:7.1f}%{100 * last['accuracy'][fam]:7.1f}%"
        if fam in rates:
            row += f"{100 * rates[fam]['majority']:9.1f}%{100 * rates[fam]['chance']:7.1f}%"
        lines.append(row)
    lines.append(f"{'mean':<14}{100 * first['mean']:7.1f}%{100 * last['mean']:7.1f}%")
    files = [f for part in history["data"].get("files", {}).values() for f in part if f["contradictory"]]
    if files:
        lines.append("contradictory records excluded: " + ", ".join(f"{f['contradictory']} in {f['path']}" for f in files)
                     + " (see data.contradictory in history.json)")
    if history["rounds"]:
        per_client = history["rounds"][-1]["clients"]
        lines.append("per client (last round): " + ", ".join(
            f"#{c['client']} k={c['k']} up={c['upload_floats']} mem={c['memory_floats']}" for c in per_client))
    ad = history.get("adapter")
    if ad:
        line = f"adapter: {ad['path']} (exact={ad['exact']})"
        if "reload_eval" in ad:
            same = ad["reload_eval"]["generated_sha1"] == last["generated_sha1"]
            line += f"; reloaded with PeftModel.from_pretrained: mean {100 * ad['reload_eval']['mean']:.1f}% " \
                    f"({'identical generations to' if same else 'DIFFERENT generations from'} the final evaluation)"
        lines.append(line)
    lines.append(f"wall time (this process): {history['wall_seconds_this_process']:.0f} s")
    return "\n".join(lines)
