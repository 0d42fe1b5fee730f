"""`fslora claims --llm` on the tiny Llama: the plan is declared before any run, steps are tuned on
seeds disjoint from the evaluation seeds, per-seed records accumulate with --resume bit-identically to
one run of the same seeds, and a record of another config is refused with one line."""
import json
import os

import pytest

from fslora_cli.main import main
from llm_bridge.claims import choose_steps

TINY = ["claims", "--llm", "--model", "tiny", "--rank", "8", "--clients", "2", "--rounds", "2", "--local-steps", "2",
        "--batch-size", "2", "--examples-per-client", "12", "--eval-per-family", "3", "--lrs", "0.01,0.05",
        "--pilot-seeds", "2", "--seed-step", "1", "--max-seeds", "3"]


def _without_seconds(obj):
    if isinstance(obj, dict):
        return {k: _without_seconds(v) for k, v in obj.items() if k != "seconds"}
    if isinstance(obj, list):
        return [_without_seconds(v) for v in obj]
    return obj


def _read(path):
    with open(path) as fh:
        return json.load(fh)


@pytest.fixture(scope="module")
def in_one_go(tmp_path_factory):
    """Both looks of the plan (seeds 0, 1, then 2) in one invocation."""
    out = str(tmp_path_factory.mktemp("one"))
    code = main([*TINY, "--looks", "2", "--out", out])
    return out, code


def test_one_run_declares_tunes_and_decides(in_one_go):
    out, code = in_one_go
    plan = _read(os.path.join(out, "plan.json"))
    assert plan["plan"]["looks"] == [2, 3] and plan["tuning_seeds"] == [1000] and plan["lr_grid"] == [0.01, 0.05]
    report = _read(os.path.join(out, "report.json"))
    assert code == (1 if report["status"] == "not supported" else 0)
    assert report["seeds"] == [0, 1, 2] or report["plan_state"]["look"] == 1 and report["plan_state"]["stopped"]
    # tuning seeds never evaluated, evaluation seeds never tuned on
    assert sorted(os.listdir(os.path.join(out, "tuning"))) == ["seed1000.json"]
    assert all(int(f[4:8]) < 1000 for f in os.listdir(os.path.join(out, "seeds")))
    tuning = _read(os.path.join(out, "tuning", "seed1000.json"))["runs"]
    assert all(r["rounds"] == [0, 2] for r in tuning.values())   # --tuning-rounds (default 2)
    for a, t in report["tuning"].items():
        losses = {lr: tuning[f"{a}@{lr}"]["heldout"][-1] for lr in ("0.01", "0.05")}
        assert t["chosen"] == float(min(losses, key=losses.get))
    for f in os.listdir(os.path.join(out, "seeds")):
        rec = _read(os.path.join(out, "seeds", f))
        assert rec["config"]["lrs"] == {a: t["chosen"] for a, t in report["tuning"].items()}
        assert set(rec["runs"]) == {"fslora", "hetlora", "flexlora", "flora"}
        assert len({r["heldout"][0] for r in rec["runs"].values()}) == 1   # every algorithm starts at W0
        assert all(set(r["accuracy"]) == {"addition", "sort3", "uppercase", "words2digits"} for r in rec["runs"].values())
    md = open(os.path.join(out, "report.md")).read()
    assert "Declared plan" in md and "intersection-union" in md.lower() and "not reproduce" in md


def test_resume_accumulates_seeds_bit_identically(in_one_go, tmp_path, capsys):
    one, _ = in_one_go
    out = str(tmp_path)
    main([*TINY, "--out", out])              # look 1 only
    first = _read(os.path.join(out, "report.json"))
    if first["plan_state"]["stopped"]:
        pytest.skip("the plan stopped at its first look on these seeds")   # the fixture's seeds decide; see below
    assert first["seeds"] == [0, 1] and first["status"] == "inconclusive"
    capsys.readouterr()
    main([*TINY, "--out", out, "--resume"])  # look 2: reuses tuning and seeds 0-1, runs seed 2
    text = capsys.readouterr().out
    assert "tuning 8 runs reused, 0 to run" in text and "2 complete seeds reused" in text
    assert sorted(os.listdir(os.path.join(out, "seeds"))) == sorted(os.listdir(os.path.join(one, "seeds")))
    for sub in ("seeds", "tuning"):
        for f in os.listdir(os.path.join(one, sub)):
            assert _without_seconds(_read(os.path.join(out, sub, f))) == _without_seconds(_read(os.path.join(one, sub, f)))
    a, b = _read(os.path.join(out, "report.json")), _read(os.path.join(one, "report.json"))
    assert a["status"] == b["status"] and a["plan_state"]["iut"] == b["plan_state"]["iut"]


def test_bad_records_are_refused_with_one_line(in_one_go, tmp_path, capsys):
    one, _ = in_one_go
    import shutil
    out = str(tmp_path / "run")
    shutil.copytree(one, out)
    path = os.path.join(out, "seeds", "seed0001.json")
    rec = _read(path)
    rec["config"]["lrs"]["fslora"] = 0.5          # recorded with another step
    with open(path, "w") as fh:
        json.dump(rec, fh)
    capsys.readouterr()
    assert main([*TINY, "--out", out, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seed0001.json" in err and "different config" in err and "lrs" in err

    rec = _read(os.path.join(one, "seeds", "seed0001.json"))
    rec["runs"]["fslora"]["heldout"][-1] = -1.0   # not a loss
    with open(path, "w") as fh:
        json.dump(rec, fh)
    assert main([*TINY, "--out", out, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "heldout" in err

    # a plan changed between runs is refused before anything runs
    assert main([*TINY[:-1], "5", "--out", one, "--resume"]) == 2
    assert "different plan" in capsys.readouterr().err
    # and records are never overwritten without --resume
    assert main([*TINY, "--out", one]) == 2
    assert "--resume" in capsys.readouterr().err


def test_choose_steps_rule():
    run = lambda loss, div=None: {"heldout": [5.0, loss], "diverged": div}   # noqa: E731
    tuning = {1000: {"a@0.1": run(2.0), "a@0.2": run(1.0), "b@0.1": run(3.0), "b@0.2": run(9.0, {"round": 1, "reason": "x"})},
              1001: {"a@0.1": run(2.0), "a@0.2": run(4.0), "b@0.1": run(3.0), "b@0.2": run(0.5)}}
    steps = choose_steps(tuning, ["a", "b"], [0.1, 0.2], [1000, 1001])
    assert steps["a"]["chosen"] == 0.1 and steps["a"]["losses"] == {"0.1": 2.0, "0.2": 2.5}  # mean over tuning seeds
    assert steps["b"]["chosen"] == 0.1 and steps["b"]["losses"]["0.2"] is None              # diverged: excluded


def test_llm_refuses_the_numpy_only_options(tmp_path, capsys):
    assert main([*TINY, "--quick", "--out", str(tmp_path)]) == 2
    assert "--llm runs claim 1 only" in capsys.readouterr().err
    assert main([*TINY, "--seeds", "4", "--out", str(tmp_path)]) == 2
    assert "--seeds only applies without --llm" in capsys.readouterr().err
    for opt, value in (("--lrs", "0,1"), ("--tuning-seeds", "5"), ("--max-seeds", "1"), ("--looks", "-1")):
        assert main([*TINY, opt, value, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert opt in err and len(err.strip().splitlines()) == 1


def test_looks_zero_reports_without_running(in_one_go, tmp_path, capsys):
    one, _ = in_one_go
    import shutil
    out = str(tmp_path / "run")
    shutil.copytree(one, out)
    capsys.readouterr()
    assert main([*TINY, "--out", out, "--resume", "--looks", "0"]) in (0, 1)
    assert "0 to run" in capsys.readouterr().out
    assert _read(os.path.join(out, "report.json"))["plan_state"] == _read(os.path.join(one, "report.json"))["plan_state"]
    os.remove(os.path.join(out, "tuning", "seed1000.json"))   # an unfinished tuning: nothing can be evaluated
    assert main([*TINY, "--out", out, "--resume", "--looks", "0"]) == 0
    report = _read(os.path.join(out, "report.json"))
    assert report["status"] == "inconclusive" and "tuning has not finished" in report["reason"] and report["seeds"] == []


def test_a_diverged_run_is_recorded_and_stalls_the_plan_with_its_reason(tmp_path, monkeypatch):
    """FlexLoRA's held-out loss explodes (finite, 1e9): its run is marked diverged with round and reason,
    the command finishes, and the look says why it cannot decide."""
    import llm_bridge.claims as claims_mod
    real = claims_mod.heldout_loss
    calls = {"n": 0}

    def exploding(model, task, batch_size=16):
        calls["n"] += 1
        return 1e9 if calls.get("flexlora") else real(model, task, batch_size)

    real_run = claims_mod.run_one

    def run_one(layers, tok, job, seed, algorithm_name, lr, **kw):
        calls["flexlora"] = algorithm_name == "flexlora" and seed == 1
        return real_run(layers, tok, job, seed, algorithm_name, lr, **kw)

    monkeypatch.setattr(claims_mod, "heldout_loss", exploding)
    monkeypatch.setattr(claims_mod, "run_one", run_one)
    out = str(tmp_path)
    assert main([*TINY, "--lrs", "0.01", "--out", out]) == 0
    bad = _read(os.path.join(out, "seeds", "seed0001.json"))["runs"]["flexlora"]
    assert bad["diverged"]["round"] == 2 and "10 x initial" in bad["diverged"]["reason"] and bad["accuracy"] is None
    report = _read(os.path.join(out, "report.json"))
    assert report["status"] == "inconclusive" and "diverged runs at seeds [1]" in report["reason"]


def test_a_step_chosen_at_the_grid_edge_is_flagged():
    from llm_bridge.claims import choose_steps

    def run(loss):
        return {"heldout": [2.0, loss], "diverged": None}
    tuning = {1000: {"a@0.001": run(0.5), "a@0.002": run(0.4), "a@0.004": run(0.6),
                     "b@0.001": run(0.3), "b@0.002": run(0.4), "b@0.004": run(0.6)}}
    steps = choose_steps(tuning, ["a", "b"], [0.001, 0.002, 0.004], [1000])
    assert (steps["a"]["chosen"], steps["a"]["edge"]) == (0.002, False)
    assert (steps["b"]["chosen"], steps["b"]["edge"]) == (0.001, True)
