"""docs/tools/record_results.py --workdir: the command writes into a kept directory with --resume, so an
interrupted recording continues; the record says when it resumed. The command itself is faked here."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess

from .sitecheck import ROOT

_spec = importlib.util.spec_from_file_location("record_results", os.path.join(ROOT, "docs", "tools", "record_results.py"))
record_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record_results)


def _fake_command(calls):
    real = subprocess.run

    def run(argv, **kwargs):
        if argv[:3] != [record_results.sys.executable, "-m", "fslora_cli.main"]:
            return real(argv, **kwargs)          # git
        calls.append(list(argv))
        out = argv[argv.index("--out") + 1]
        with open(os.path.join(out, "report.json"), "w", encoding="utf-8") as fh:
            json.dump({"claims": [], "meta": {"mode": "quick"}}, fh)
        with open(os.path.join(out, "runs.json"), "w", encoding="utf-8") as fh:
            fh.write("{}")
        return subprocess.CompletedProcess(argv, 0)
    return run


def test_workdir_resumes_in_a_kept_directory_and_says_so(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(record_results.subprocess, "run", _fake_command(calls))
    work, dest = tmp_path / "work", tmp_path / "results"
    first = json.loads(open(record_results.record("claims", ["--quick"], str(dest), workdir=str(work))).read())
    second = json.loads(open(record_results.record("claims", ["--quick"], str(dest), workdir=str(work))).read())
    assert all(c[c.index("--out") + 1] == str(work) and c[-1] == "--resume" for c in calls) and len(calls) == 2
    assert "resumed" not in first and second["resumed"] is True and second["command"] == "fslora claims --quick"
    assert os.path.exists(work / "report.json")          # kept for the next invocation


def test_without_workdir_the_run_is_fresh_in_a_temporary_directory(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(record_results.subprocess, "run", _fake_command(calls))
    rec = json.loads(open(record_results.record("claims", ["--quick"], str(tmp_path))).read())
    assert "--resume" not in calls[0] and "resumed" not in rec and not os.path.exists(calls[0][calls[0].index("--out") + 1])


def test_workdir_without_a_directory_is_refused(capsys):
    assert record_results.main(["claims", "--workdir"]) == 2
    assert "--workdir" in capsys.readouterr().out
