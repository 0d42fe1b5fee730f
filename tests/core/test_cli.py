"""`fslora simulate` and `fslora bench` end to end (small settings)."""
from __future__ import annotations

import json

from fslora_cli.main import main


def test_simulate_writes_table_json_png(tmp_path, capsys):
    out = tmp_path / "sim"
    code = main(["simulate", "--clients", "4", "--rank", "8", "--rounds", "3", "--m", "10", "--n", "6",
                 "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "final loss" in text and "fslora" in text and "flora" in text
    data = json.loads((out / "history.json").read_text())
    assert set(data["algorithms"]) == {"fslora", "fedit", "hetlora", "flexlora", "flora"}
    for name, h in data["algorithms"].items():
        assert len(h["loss"]) == 4 and len(h["upload_floats"]) == 4
    assert data["config"]["rank"] == 8 and len(data["config"]["budgets"]) == 4
    assert (out / "simulate.png").stat().st_size > 10_000
    # resume: all rounds are in the checkpoints, nothing to redo, same history
    assert main(["simulate", "--clients", "4", "--rank", "8", "--rounds", "3", "--m", "10", "--n", "6",
                 "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "history.json").read_text())["algorithms"] == data["algorithms"]


def test_simulate_bad_input_is_one_line(tmp_path, capsys):
    assert main(["simulate", "--rank", "4", "--budgets", "1,9", "--clients", "2", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "budgets[1]" in err[0] and "[1, 4]" in err[0]
    assert main(["simulate", "--clients", "0", "--out", str(tmp_path)]) == 2
    assert main(["simulate", "--algorithms", "fslora,nope", "--out", str(tmp_path)]) == 2


def test_bench_json(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert main(["bench", "--clients", "2", "--m", "32", "--n", "24", "--rank", "8", "--k", "2", "--local-steps", "2",
                 "--repeats", "1", "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["submatrix_vs_masked_speedup"] > 0 and data["k2_over_k8_time_ratio"] > 0
    assert (data["setting"]["m"], data["setting"]["n"]) == (32, 24)


def test_bench_dispatches_on_the_parsed_option(capsys, monkeypatch):
    """One parser for `fslora bench`: the parsed --bridge picks the side (no argv sniffing), each side
    gets its own defaults, and an option of the other side is refused by name."""
    import fslora_ref.bench
    import llm_bridge.bench
    calls = []
    monkeypatch.setattr(fslora_ref.bench, "run_bench", lambda **kw: calls.append(("numpy", kw)))
    monkeypatch.setattr(llm_bridge.bench, "run_bridge_bench",
                        lambda setting, json_path=None: calls.append(("bridge", setting)))
    assert main(["bench", "--bridge", "--tiny", "--rank", "16"]) == 0
    assert main(["bench", "--rank", "16"]) == 0
    (side1, bridge), (side2, numpy_kw) = calls
    assert (side1, side2) == ("bridge", "numpy")
    assert bridge.tiny and bridge.budget == 2 and bridge.batch_size == 8 and bridge.repeats == 7
    assert numpy_kw["k"] == 8 and numpy_kw["batch_size"] == 32 and numpy_kw["repeats"] == 5
    capsys.readouterr()
    assert main(["bench", "--bridge", "--clients", "2"]) == 2
    assert "--clients only applies without --bridge" in capsys.readouterr().err
    assert main(["bench", "--steps", "2"]) == 2
    assert "--steps only applies with --bridge" in capsys.readouterr().err
    assert len(calls) == 2
