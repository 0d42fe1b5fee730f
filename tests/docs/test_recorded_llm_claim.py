"""The committed `fslora claims --llm` record (docs/results/claims_llm/) replays to its own report.

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


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RECORD = os.path.join(ROOT, "docs", "results", "claims_llm")
PAGE = os.path.join(ROOT, "docs", "results", "claims_llm.md")


def _replay(tmp_path, edit=None):
    """Copy the record, optionally edit it, replay it with --looks 0 and return (replayed, committed) reports."""
    out = tmp_path / "claims-llm"
    shutil.copytree(RECORD, out)
    if edit is not None:
        edit(out)
    proc = subprocess.run([sys.executable, "-m", "fslora_cli.main", "claims", "--llm", "--resume", "--looks", "0",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    with open(out / "report.json") as fh:
        replayed = json.load(fh)
    with open(os.path.join(RECORD, "report.json")) as fh:
        committed = json.load(fh)
    for report in (replayed, committed):
        report.pop("invocation_seconds", None)
    return replayed, committed


def test_committed_llm_record_replays_to_its_report(tmp_path):
    replayed, committed = _replay(tmp_path)
    differing = sorted(k for k in set(replayed) | set(committed) if replayed.get(k) != committed.get(k))
    assert not differing, f"the committed report differs from its replay in {differing}"
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
