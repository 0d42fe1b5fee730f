"""Every numeric option has a stated range and nonsense is refused in one line (exit 2) before any
work: absurd rounds / steps / jobs, NaN or infinite time limits, empty selections and file names;
naming a crosscheck target never puts the working directory first on sys.path."""
from __future__ import annotations

import sys

import pytest

from fslora_ref.validation import check_time_limit, check_workers, max_threads

from .clitools import one_line_error

BIG = str(10**29)


@pytest.mark.parametrize("argv,words", [
    (["simulate", "--rounds", BIG], "--rounds must be an integer in [0, 1000000], got 1000"),
    (["simulate", "--local-steps", BIG], "--local-steps must be an integer in [1, 100000]"),
    (["claims", "--quick", "--jobs", "100000"], f"--jobs must be an integer in [1, {max_threads()}]"),
    (["claims", "--quick", "--only", ""], "--only must name at least one claim id, got ''"),
    (["claims", "--quick", "--only", " , "], "--only must name at least one claim id"),
    (["claims", "--quick", "--seeds", "100000"], "--seeds must be an integer in [2, 1000]"),
    (["crosscheck", "fslora_ref:FSLoRA", "--time-limit", "nan"], "--time-limit (seconds, 0: no limit) must be a number"),
    (["crosscheck", "fslora_ref:FSLoRA", "--time-limit", "inf"], "must be a number in [0, 604800], got inf"),
    (["crosscheck", "fslora_ref:FSLoRA", "--time-limit", "-1"], "must be a number in [0, 604800], got -1"),
    (["flower", "simulate", "--export-run-config", ""], "--export-run-config must name a file, got an empty string"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_nonsense_is_one_line(argv, words, capsys, tmp_path):
    if argv[0] in ("simulate", "claims", "flower"):
        argv = argv + (["--out", str(tmp_path / "o")] if argv[0] != "flower" else [])
    err = one_line_error(capsys, argv)
    assert words in err, err
    assert not (tmp_path / "o").exists()   # refused before any output was prepared


def test_library_bounds():
    assert check_time_limit("t", 0) is None and check_time_limit("t", 2.5) == 2.5
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError):
            check_time_limit("t", bad)
    assert check_workers("jobs", 2, units=1) == 1          # never more workers than units of work
    assert check_workers("jobs", 2, units=5) == 2
    with pytest.raises(ValueError, match="jobs must be an integer in"):
        check_workers("jobs", max_threads() + 1, units=100)


def test_target_import_does_not_put_the_working_directory_first(tmp_path, monkeypatch):
    from fslora_ref.conformance.targets import _import
    installed, here = tmp_path / "site", tmp_path / "cwd"
    installed.mkdir()
    here.mkdir()
    (installed / "i23_probe_mod.py").write_text("VALUE = 'installed'\n")
    (here / "i23_probe_mod.py").write_text("VALUE = 'stray copy in the working directory'\n")
    (here / "i23_target.py").write_text("import i23_probe_mod\nVALUE = i23_probe_mod.VALUE\n")
    monkeypatch.chdir(here)
    monkeypatch.setattr(sys, "path", [str(installed)] + [p for p in sys.path if p not in ("", str(here))])
    for name in ("i23_probe_mod", "i23_target"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = _import("i23_target", False)
    assert module.VALUE == "installed"              # the stray module does not shadow the real one
    assert sys.path[-1] == str(here) and sys.path[0] == str(installed)
    for name in ("i23_probe_mod", "i23_target"):
        sys.modules.pop(name, None)
