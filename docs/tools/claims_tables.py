"""Regenerate the claims tables of README.md and docs/guides/claims.md from the recorded report.

    python docs/tools/claims_tables.py            # rewrite the marked blocks from docs/results/claims/record.json
    python docs/tools/claims_tables.py --check    # exit 1 if a block differs from what the record gives

Each table sits between ``<!-- claims-table:NAME -->`` and ``<!-- /claims-table:NAME -->`` lines; only
those blocks are rewritten, whatever the verdicts are. README gets the statuses (claim x family x
protocol), the guide the statuses with the deciding comparison and each arm's tuned step. The stamp
line under each table names the record's command, commit and date, so a table never outlives its run
silently (tests/docs/test_claims_tables.py fails when a block and the record disagree).
"""
from __future__ import annotations

import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORD = os.path.join(ROOT, "docs", "results", "claims", "record.json")
TARGETS = {"README.md": ("status",), os.path.join("docs", "guides", "claims.md"): ("results", "steps")}


def _columns(entries) -> list:
    families = list(dict.fromkeys(e["family"] for e in entries))
    protocols = list(dict.fromkeys(e.get("protocol") for e in entries))
    return [(f, p) for f in families for p in protocols]


def _head(columns) -> str:
    heads = [f if p is None else f"{f} ({p})" for f, p in columns]
    return "| claim | " + " | ".join(heads) + " |\n|---|" + "---|" * len(columns) + "\n"


def _stamp(record: dict) -> str:
    mode = record["report"]["meta"].get("mode", "full")
    dirty = " (with uncommitted changes)" if record.get("code_modified") else ""
    profile = "the quick profile: a smoke test, not a verdict" if mode == "quick" else "the full profile"
    return (f"\n*From `{record['command']}` ({profile}), commit `{record['commit'][:10]}`{dirty}, "
            f"{record['recorded_utc']}; regenerate with `python docs/tools/claims_tables.py`.*\n")


def table(record: dict, kind: str) -> str:
    """The markdown of one table from a stamped record.

    Parameters
    ----------
    record : dict
        ``docs/results/claims/record.json`` (record_results.py's format).
    kind : {"status", "results", "steps"}
        Statuses only; statuses with the deciding comparison; each arm's tuned step.

    Returns
    -------
    str
        The table and its stamp line.
    """
    report = record["report"]
    entries = report["claims"]
    columns = _columns(entries)
    if kind == "steps":
        tuned = report["meta"].get("tuned_steps", {})
        cols = [(f, p) for f, p in columns if p in tuned and f in tuned[p]]
        labels = list(dict.fromkeys(lbl for f, p in cols for lbl in tuned[p][f]))
        out = "| arm | " + " | ".join(f"{f} ({p})" for f, p in cols) + " |\n|---|" + "---|" * len(cols) + "\n"
        for lbl in labels:
            cells = ["not run" if tuned[p][f].get(lbl) is None else f"{tuned[p][f][lbl]:.4g}" for f, p in cols]
            out += f"| `{lbl}` | " + " | ".join(cells) + " |\n"
        return out + _stamp(record)
    by = {(e["claim"], e["family"], e.get("protocol")): e for e in entries}
    out = _head(columns)
    for claim in dict.fromkeys(e["claim"] for e in entries):
        title = next(e["title"] for e in entries if e["claim"] == claim)
        cells = []
        for f, p in columns:
            e = by.get((claim, f, p))
            if e is None:
                cells.append("")
            elif kind == "status":
                cells.append(e["status"])
            else:
                cells.append(f"**{e['status']}**<br>" + e["key"].replace("|", "\\|"))
        out += f"| {claim}: {title} | " + " | ".join(cells) + " |\n"
    return out + _stamp(record)


def render(text: str, record: dict, kinds) -> str:
    """``text`` with every marked block of ``kinds`` replaced by its table.

    Parameters
    ----------
    text : str
        A markdown file's content.
    record : dict
        The stamped claims record.
    kinds : sequence of str
        The block names the file must hold.

    Returns
    -------
    str
    """
    for kind in kinds:
        pattern = re.compile(rf"(<!-- claims-table:{kind} -->\n).*?(<!-- /claims-table:{kind} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"no <!-- claims-table:{kind} --> ... <!-- /claims-table:{kind} --> block")
        text = pattern.sub(lambda m: m.group(1) + table(record, kind) + m.group(2), text)
    return text


def main(argv: list) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print("usage: python docs/tools/claims_tables.py [--check]")
        return 2
    with open(RECORD, encoding="utf-8") as fh:
        record = json.load(fh)
    stale = []
    for rel, kinds in TARGETS.items():
        path = os.path.join(ROOT, rel)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        new = render(text, record, kinds)
        if new != text:
            stale.append(rel)
            if not check:
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(new)
    verb = "differ from the record" if check else "rewritten"
    print(f"{', '.join(stale)}: {verb}" if stale else "the claims tables match the record")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
