"""A launcher killed with `kill -9` cannot write its ledger entry's outcome: the entry stays "running".
The next `fslora flower ... --resume` on that directory (the only writer: it holds the output lock) marks
such entries "interrupted" with an error that says what happened; without --resume the ledger starts
afresh anyway. The deployment is a stand-in (tests/flower/test_engine_retry.fake_engine)."""
import json

from fslora_cli.main import main
from fslora_flower.rounds import Ledger

from test_engine_retry import CLI, OTHER_FAILURE, fake_engine, runs

KILLED = {"run-id": "9", "status": "running", "nodes": {}, "rounds": [{"round": 1}, {"round": 2}]}


def test_mark_interrupted_marks_only_running_entries(tmp_path):
    out = str(tmp_path)
    assert Ledger.mark_interrupted(out) == 0                       # no ledger: nothing to mark
    (tmp_path / "flower.json").write_text(json.dumps({"runs": [
        {"run-id": "1", "status": "completed"}, {"run-id": "2", "status": "failed", "error": "x"}, KILLED]}))
    assert Ledger.mark_interrupted(out) == 1
    entries = Ledger.read(out)["runs"]
    assert [e["status"] for e in entries] == ["completed", "failed", "interrupted"]
    assert entries[1]["error"] == "x" and entries[2]["rounds"] == KILLED["rounds"]
    assert "launcher stopped before this run recorded an outcome" in entries[2]["error"]
    assert Ledger.mark_interrupted(out) == 0                       # idempotent
    (tmp_path / "flower.json").write_text("[1, 2")
    assert Ledger.mark_interrupted(out) == 0                       # damaged: left for the resume to refuse
    assert (tmp_path / "flower.json").read_text() == "[1, 2"


def test_a_resume_marks_the_killed_launchers_entry_interrupted(tmp_path, monkeypatch):
    out = tmp_path / "o"
    out.mkdir()
    (out / "flower.json").write_text(json.dumps({"runs": [KILLED]}))
    fake_engine(monkeypatch, fails=1, output=OTHER_FAILURE)     # the resumed attempt fails: no real run needed
    assert main(["flower", "simulate", *CLI, "--engine", "simulation", "--out", str(out), "--resume"]) == 1
    entries = runs(str(out))
    assert entries[0]["run-id"] == "9" and entries[0]["status"] == "interrupted"
    assert entries[-1]["status"] != "interrupted"               # the resumed run's own entry is its own
