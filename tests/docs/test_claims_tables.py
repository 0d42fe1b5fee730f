"""docs/tools/claims_tables.py: the claims tables of README.md and the claims guide are what the recorded report
says (regenerated from docs/results/claims/record.json, whatever the verdicts), and the check sees a change."""
from __future__ import annotations

import copy
import importlib.util
import json
import os

from .sitecheck import ROOT

_spec = importlib.util.spec_from_file_location("claims_tables", os.path.join(ROOT, "docs", "tools", "claims_tables.py"))
claims_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(claims_tables)


def _record() -> dict:
    with open(claims_tables.RECORD, encoding="utf-8") as fh:
        return json.load(fh)


def test_the_committed_tables_match_the_record():
    assert claims_tables.main(["--check"]) == 0


def test_a_changed_status_in_the_record_changes_the_tables():
    record = _record()
    for rel, kinds in claims_tables.TARGETS.items():
        with open(os.path.join(ROOT, rel), encoding="utf-8") as fh:
            text = fh.read()
        assert claims_tables.render(text, record, kinds) == text
        flipped = copy.deepcopy(record)
        first = flipped["report"]["claims"][0]
        first["status"] = "supported" if first["status"] != "supported" else "not supported"
        if "steps" in kinds:
            meta = flipped["report"]["meta"]["tuned_steps"]
            protocol = next(iter(meta))
            family = next(iter(meta[protocol]))
            arm = next(iter(meta[protocol][family]))
            meta[protocol][family][arm] = 12345.0
        assert claims_tables.render(text, flipped, kinds) != text


def test_every_entry_of_the_record_has_a_cell():
    record = _record()
    status = claims_tables.table(record, "status")
    for e in record["report"]["claims"]:
        assert f"{e['claim']}: {e['title']}" in status
    rows = [line for line in status.splitlines() if line.startswith("| claim") and not line.startswith("| claim |")]
    assert len(rows) == len({e["claim"] for e in record["report"]["claims"]})
