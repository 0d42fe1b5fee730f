"""The committed `fslora claims --llm` records replay to their own reports.

docs/results/claims_llm/ is the recorded run (its page: docs/results/claims_llm.md);
docs/results/claims_llm_first_grid/ is the earlier run with a grid whose lower edge every algorithm chose.

`--resume --looks 0` re-derives the status, the tests and every table from the per-seed records without
running a model, so the committed `report.json` must equal the replay's (apart from the replay's own wall
time), and the recorded page must state the replayed status. A record edited by hand (a seed's loss
changed) no longer replays to the committed report: the second test shows the first can fail.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORDS = {name: os.path.join(ROOT, "docs", "results", name) for name in ("claims_llm", "claims_llm_first_grid")}
RECORD = RECORDS["claims_llm"]
PAGE = os.path.join(ROOT, "docs", "results", "claims_llm.md")


def _replay(tmp_path, edit=None, record=RECORD):
    """Copy the record, optionally edit it, replay it with --looks 0 and return (replayed, committed) reports."""
    out = tmp_path / "claims-llm"
    shutil.copytree(record, out)
    if edit is not None:
        edit(out)
    with open(out / "plan.json") as fh:
        grid = ",".join(repr(v) for v in json.load(fh)["lr_grid"])   # the record's grid, whatever the default
    proc = subprocess.run([sys.executable, "-m", "fslora_cli.main", "claims", "--llm", "--resume", "--looks", "0",
                           "--lrs", grid, "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    with open(out / "report.json") as fh:
        replayed = json.load(fh)
    with open(os.path.join(record, "report.json")) as fh:
        committed = json.load(fh)
    for report in (replayed, committed):
        report.pop("invocation_seconds", None)
    return replayed, committed


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_committed_llm_record_replays_to_its_report(tmp_path, name):
    replayed, committed = _replay(tmp_path, record=RECORDS[name])
    differing = sorted(k for k in set(replayed) | set(committed) if replayed.get(k) != committed.get(k))
    assert not differing, f"the committed report differs from its replay in {differing}"
    if name != "claims_llm":
        return
    with open(PAGE) as fh:
        page = fh.read()
    n = replayed["plan_state"]["n_seeds"]
    assert f"**Status: `{replayed['status']}`** after {n} evaluation seeds" in page


def test_a_hand_edited_seed_record_does_not_replay(tmp_path):
    def halve_fslora_loss(out):
        path = out / "seeds" / "seed0000.json"
        record = json.loads(path.read_text())
        curve = record["runs"]["fslora"]["heldout"]            # held-out loss after round 0, ..., T
        curve[-1] = curve[-1] / 2
        path.write_text(json.dumps(record))

    replayed, committed = _replay(tmp_path, halve_fslora_loss)
    assert replayed["paired_differences"] != committed["paired_differences"]
