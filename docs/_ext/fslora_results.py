"""``fslora-report``: a results page rendered from a committed report record.

    ```{fslora-report} results/verify/record.json
    ```

The record (written by docs/tools/record_results.py) holds a command's own report.json unchanged
plus the commit it ran at. The directive renders the stamp (command, commit, date, exit code, and a
warning when the code had uncommitted changes), the status counts, one row per claim and the PNGs
recorded beside it. Nothing is re-run at build time; a missing or malformed record fails the build.
"""
from __future__ import annotations

import glob
import json
import os
from collections import Counter

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

# the columns of each command's table: (header, relative width, how to get the cell from one claim entry)
COLUMNS = {
    "verify": [("claim", 28, lambda c: c["id"]), ("status", 16, lambda c: c["status"]),
               ("impl", 8, lambda c: "yes" if c.get("through_implementation") else "-"),
               ("key number", 48, lambda c: c.get("key", ""))],
    "claims": [("claim", 12, lambda c: c.get("claim", c["id"])), ("family", 14, lambda c: c.get("family", "")),
               ("protocol", 8, lambda c: c.get("protocol", "")),
               ("status", 16, lambda c: c["status"]), ("weakest comparison: effect [CI]", 50, lambda c: c.get("key", ""))],
}


def load_record(path: str) -> dict:
    """The record, checked for the fields the page shows (ValueError naming what is missing)."""
    with open(path, encoding="utf-8") as fh:
        record = json.load(fh)
    missing = [k for k in ("command", "commit", "recorded_utc", "exit_code", "report") if k not in record]
    if missing or "claims" not in record.get("report", {}):
        raise ValueError(f"{path}: not a report record (missing {missing or ['report.claims']}); "
                         f"write it with docs/tools/record_results.py")
    return record


def command_of(record: dict) -> str:
    parts = record["command"].split()
    if len(parts) < 2 or parts[1] not in COLUMNS:
        raise ValueError(f"record of {record['command']!r}: only {sorted(COLUMNS)} reports can be rendered")
    return parts[1]


def table(headers: list, widths: list, rows: list) -> nodes.table:
    """A plain docutils table of text cells (no markup is interpreted in the cells)."""
    tbl = nodes.table(classes=["fslora-report", "colwidths-given"])
    group = nodes.tgroup(cols=len(headers))
    tbl += group
    group += [nodes.colspec(colwidth=w) for w in widths]

    def row(cells, cls=nodes.entry):
        r = nodes.row()
        for text in cells:
            entry = cls()
            entry += nodes.paragraph(text=str(text))
            r += entry
        return r
    head = nodes.thead()
    head += row(headers)
    body = nodes.tbody()
    for cells in rows:
        body += row(cells)
    group += [head, body]
    return tbl


def stamp(record: dict) -> nodes.paragraph:
    para = nodes.paragraph()
    para += nodes.Text("Produced by ")
    para += nodes.literal(text=record["command"])
    para += nodes.Text(" at commit ")
    para += nodes.literal(text=record["commit"])
    para += nodes.Text(f" on {record['recorded_utc']} (Python {record.get('python', '?')}, "
                       f"{record.get('platform', '?')}); exit code {record['exit_code']}. "
                       "Rendered from the committed record, not re-run when the site is built.")
    return para


class ReportDirective(SphinxDirective):
    required_arguments = 1
    option_spec = {"no-figures": directives.flag}

    def run(self):
        rel, path = self.env.relfn2path(self.arguments[0])
        self.env.note_dependency(rel)
        try:
            record = load_record(path)
            command = command_of(record)
        except (OSError, ValueError) as exc:
            raise self.error(str(exc)) from None
        claims = record["report"]["claims"]
        out = [stamp(record)]
        if record.get("code_modified"):
            warn = nodes.warning()
            warn += nodes.paragraph(text="The code had uncommitted changes when this record was made: the numbers "
                                         "may not come from the commit named above.")
            out.append(warn)
        counts = Counter(c["status"] for c in claims)
        out.append(nodes.paragraph(text=f"{len(claims)} claims: " + ", ".join(f"{n} {s}" for s, n in counts.most_common())
                                        + "."))
        columns = COLUMNS[command]
        out.append(table([h for h, _, _ in columns], [w for _, w, _ in columns],
                         [[get(c) for _, _, get in columns] for c in claims]))
        if "no-figures" not in self.options:
            folder_rel = os.path.dirname(rel)
            for png in sorted(glob.glob(os.path.join(os.path.dirname(path), "*.png"))):
                name = os.path.basename(png)
                self.env.note_dependency(os.path.join(folder_rel, name))
                out.append(nodes.image(uri="/" + os.path.join(folder_rel, name).replace(os.sep, "/"),
                                       alt=f"{command}: {os.path.splitext(name)[0]}"))
        return out


def setup(app):
    app.add_directive("fslora-report", ReportDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
