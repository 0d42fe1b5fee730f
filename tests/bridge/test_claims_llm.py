"""`fslora claims --llm` on the tiny Llama: the bridge runs claim 1 through theory.empirical's
statistics and report, stores every finished run, and a resumed call recomputes nothing."""
import json

from fslora_cli.main import main

TINY = ["claims", "--llm", "--model", "tiny", "--rank", "8", "--clients", "2", "--rounds", "2", "--local-steps", "2",
        "--batch-size", "2", "--examples-per-client", "12", "--eval-per-family", "3", "--eval-every", "1",
        "--lr", "0.02", "--seeds", "2"]


def test_llm_claim1_report_and_resume(tmp_path, capsys):
    out = str(tmp_path)
    code = main([*TINY, "--out", out])
    report = json.loads((tmp_path / "report.json").read_text())
    (entry,) = report["claims"]
    assert code == (1 if entry["status"] == "not supported" else 0)
    assert entry["id"] == "claim1.llm_synthetic" and entry["status"] in ("supported", "not supported", "inconclusive")
    ev = entry["evidence"]
    assert set(ev["by_metric"]) == {"heldout", "accuracy"} and ev["seeds"] == [0, 1]
    assert [(c["treatment"], c["reference"]) for c in ev["by_metric"]["heldout"]["comparisons"]] == [
        ("fslora", "hetlora"), ("fslora", "flexlora"), ("fslora", "flora")]
    assert set(ev["arms"]) == {"fslora", "hetlora", "flexlora", "flora", "fedit (full rank)"}
    runs = json.loads((tmp_path / "runs.json").read_text())["units"]
    assert len(runs) == 10
    for rec in runs.values():
        r = rec["runs"]
        assert r["rounds"] == [0, 1, 2] and r["metrics"]["accuracy"][1] is None and r["seconds"] > 0
    # every algorithm starts from W = W0: one initial evaluation per seed, shared
    first = {k.split("/")[0]: set() for k in runs}
    for k, rec in runs.items():
        first[k.split("/")[0]].add(rec["runs"]["metrics"]["heldout"][0])
    assert all(len(v) == 1 for v in first.values())
    assert (tmp_path / "claim1.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    main([*TINY, "--out", out, "--resume"])
    assert "10 finished runs reused, 0 to run" in capsys.readouterr().out
    assert json.loads((tmp_path / "report.json").read_text())["claims"][0]["evidence"] == ev


def test_llm_refuses_the_numpy_only_options(tmp_path, capsys):
    assert main([*TINY, "--quick", "--out", str(tmp_path)]) == 2
    assert "--llm runs claim 1 only" in capsys.readouterr().err
