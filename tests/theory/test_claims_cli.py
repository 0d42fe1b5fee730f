"""`fslora claims` at a small size: report shape, equal-cost axes, resume, the step tuning in the report,
and ``--impl`` of a broken FSLoRA that changes claim 1's status."""
from __future__ import annotations

import json
import shutil

import pytest

from fslora_cli.main import main
from fslora_ref.algorithms import ALGORITHMS, FlexLoRA, FLoRA, HetLoRA
from fslora_cli import claims as cli
from theory.empirical.job import ClaimsJob
from tests.mutants.core_mutants import SubmatrixWithoutScale
from theory.empirical import engine
from theory.empirical.runs import Arm, run_arm
from theory.empirical.settings import settings_for
from theory.empirical.stats import INCONCLUSIVE, NOT_SUPPORTED, STATUSES, SUPPORTED

SMALL = ["--quick", "--family", "least_squares", "--rounds", "20", "--clients", "8", "--jobs", "1"]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("claims")
    code = main(["claims", *SMALL, "--out", str(out)])
    return code, out, json.loads((out / "report.json").read_text())


def test_quick_run_writes_a_report_in_verifys_shape(quick_run):
    code, out, report = quick_run
    entries = report["claims"]
    assert code == (1 if any(e["status"] == NOT_SUPPORTED for e in entries) else 0)
    # every claim under both protocols, side by side (the --quick default)
    assert [e["id"] for e in entries] == [f"claim{i}.least_squares.{p}" for i in range(1, 6) for p in ("sgd", "paper")]
    assert [e["protocol"] for e in entries] == ["sgd", "paper"] * 5
    for e in entries:
        assert {"id", "statement", "status", "evidence"} <= set(e) and e["status"] in STATUSES
        ev = e["evidence"]
        assert ev["seeds"] == [0, 1, 2, 3, 4] and set(ev["by_metric"]) == {"heldout", "train"}
        assert e["status"] == ev["by_metric"]["heldout"]["status"]
        for c in ev["by_metric"]["heldout"]["comparisons"]:
            assert c["n_seeds"] == 5 and c["n_comparisons"] == ev["n_comparisons"]
            lo, hi = c["ci_d"]
            assert lo <= c["mean_d"] <= hi and c["effect_ci"][0] <= c["effect"] <= c["effect_ci"][1]
            assert c["verdict"] in ("for", "against", "undecided") and len(c["treatment_values"]) == 5
        assert (out / f"{e['claim']}.png").read_bytes()[:8] == PNG
    meta = report["meta"]
    assert meta["mode"] == "quick" and meta["settings"]["sgd"]["least_squares"]["rounds"] == 20
    assert {p: meta["settings"][p]["least_squares"]["protocol"] for p in ("sgd", "paper")} == {"sgd": "sgd", "paper": "paper"}
    assert meta["cpu_seconds"] > 0 and set(meta["protocols"]) == {"sgd", "paper"}
    md = (out / "report.md").read_text()
    assert "| claim | least_squares (sgd) | least_squares (paper) |" in md
    assert "## claim5: robustness to the budget distribution" in md
    assert "margin" in md.lower() and "Bonferroni" in md
    assert set(json.loads((out / "runs.json").read_text())["units"]) >= {
        f"{p}/least_squares/seed4/fslora|r=16|ratios,(0.125, 0.25, 0.5, 0.75)" for p in ("sgd", "paper")}


def test_claims_impl_of_an_fslora_without_the_r_over_k_scale_changes_claim1_under_both_protocols(tmp_path):
    """The check can fail and says what ran: ``--impl`` of FSLoRA's client forgetting the r/k scale gives a
    different claim-1 status than the reference at the same size (each tuned by its protocol's rule), under each
    protocol, recorded in the report. At T = 60, under SGD the reference is still falling (inconclusive by the
    horizon check) while the mutant, which tolerates an 8x larger step, has trained and loses to HetLoRA
    significantly (not supported); under the paper's optimisers the reference has trained and loses to FLoRA
    (not supported) while the mutant's client, which sees a model without the r/k amplification, is still
    falling at T (inconclusive)."""
    size = [*SMALL[:3], "--rounds", "60", *SMALL[5:], "--only", "1", "--protocol", "both"]
    main(["claims", *size, "--out", str(tmp_path / "ref")])
    main(["claims", *size, "--impl", "tests.mutants.core_mutants:SubmatrixWithoutScale", "--out", str(tmp_path / "mut")])
    ref, mut = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("ref", "mut"))
    assert [e["id"] for e in mut["claims"]] == ["claim1.least_squares.sgd", "claim1.least_squares.paper"]
    status = {name: {e["protocol"]: e["status"] for e in r["claims"]} for name, r in (("ref", ref), ("mut", mut))}
    assert status == {"ref": {"sgd": INCONCLUSIVE, "paper": NOT_SUPPORTED},
                      "mut": {"sgd": NOT_SUPPORTED, "paper": INCONCLUSIVE}}
    assert ref["meta"]["implementation"]["target"] is None
    assert mut["meta"]["implementation"]["target"] == "tests.mutants.core_mutants:SubmatrixWithoutScale"
    assert "SubmatrixWithoutScale" in mut["meta"]["implementation"]["fslora"]
    assert "tests.mutants.core_mutants:SubmatrixWithoutScale" in (tmp_path / "mut" / "report.md").read_text()
    # each FSLoRA was tuned on its own: the mutant's steps differ from the reference's under both protocols
    for p in ("sgd", "paper"):
        assert mut["meta"]["tuned_steps"][p]["least_squares"]["fslora"] != \
            ref["meta"]["tuned_steps"][p]["least_squares"]["fslora"]


def test_report_states_scope_step_rule_and_tuning(quick_run):
    _, out, report = quick_run
    md = (out / "report.md").read_text()
    assert "not reproduced" in md and "not evidence against" in md and "Step rule (sgd): half the largest stable step" in md
    assert "Step rule (paper): one step per algorithm" in md and "client AdamW" in md
    assert "## Tuned steps" in md and "## Horizon check" in md and "## Diverged runs" in md
    meta = report["meta"]
    assert meta["tuning_seeds"] == [1000, 1001] and "half the largest stable step" in meta["step_rule"]["sgd"]
    assert "lowest mean final held-out loss" in meta["step_rule"]["paper"]
    for e in report["claims"]:
        steps = meta["tuned_steps"][e["protocol"]]["least_squares"]
        for label, arm in e["evidence"]["arms"].items():
            t = arm["tuning"]
            assert arm["lr"] == t["chosen"] and t["chosen"] in steps.values() and t["seeds"] == [1000, 1001]
            assert arm["horizon"]["checked"]
            if e["protocol"] == "sgd":     # each arm its own: half the largest stable step
                assert t["tried"][-1]["stable"] and t["chosen"] == t["largest_stable"] / 2
            else:                          # one per algorithm, tuned on its claim-1 arm: the best step scored
                assert t["arm"] == f"{arm['algorithm']}|r=16|ratios,(0.125, 0.25, 0.5, 0.75)"
                best = min((x for x in t["tried"] if x["stable"]), key=lambda x: x["heldout_final_mean"])
                assert t["chosen"] == best["lr"]


def test_equal_cost_axes(quick_run):
    entries = {e["claim"]: e for e in quick_run[2]["claims"]}
    arms = entries["claim1"]["evidence"]["arms"]
    budgeted = [arms[a]["upload_floats_final"] for a in ("fslora", "hetlora", "flexlora", "flora")]
    assert all(u == budgeted[0] for u in budgeted)          # same budgets -> same upload per round
    assert arms["fedit (full rank)"]["upload_floats_final"][0] > budgeted[0][0]
    for c in entries["claim2"]["evidence"]["by_metric"]["heldout"]["comparisons"]:
        for where in c["evaluated_at"]:                   # FSLoRA(r, k) and FedIT(k) meet at equal upload
            assert where["treatment_round"] == where["reference_round"] == 20 and where["upload_floats"] > 0
    assert all(w == {"round": 20} for c in entries["claim4"]["evidence"]["by_metric"]["heldout"]["comparisons"]
               for w in c["evaluated_at"])


def test_resume_reuses_every_stored_run(quick_run, tmp_path, monkeypatch):
    _, out, report = quick_run
    shutil.copy(out / "runs.json", tmp_path / "runs.json")
    monkeypatch.setattr(engine, "run_unit", lambda *a, **k: pytest.fail("a stored run was recomputed"))
    main(["claims", *SMALL, "--only", "1", "--resume", "--out", str(tmp_path)])
    again = json.loads((tmp_path / "report.json").read_text())["claims"]
    assert [e["evidence"] for e in again] == [e["evidence"] for e in report["claims"][:2]]


def test_same_seed_gives_bit_identical_runs():
    settings = settings_for("two_layer", quick=True, rounds=3, clients=4)
    arm = Arm("fslora", "fslora", 8, ("distribution", "heavy_tail_low", 1, 6))
    assert run_arm(arm, settings, 2).to_json() == run_arm(arm, settings, 2).to_json()


@pytest.mark.parametrize("argv,words", [
    (["--seeds", "1"], "--seeds must be an integer in [2, 1000]"),
    (["--only", "7"], "unknown claim id '7'"),
    (["--margin", "0"], "--margin must be in (0, 1)"),
    (["--rounds", "0"], "--rounds must be an integer in [1, 1000000]"),
    (["--impl", "no_such_module_xyz:impl"], "cannot import module 'no_such_module_xyz'"),
    (["--impl", "fslora_ref.conformance.reference:impl"], "--impl fslora_ref.conformance.reference:impl: fslora claims "
                                                          "runs an fslora_ref.algorithms.Algorithm"),
])
def test_bad_arguments_are_one_line_errors(argv, words, tmp_path, capsys):
    assert main(["claims", *argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_out_must_be_a_directory(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["claims", "--only", "1", "--out", str(tmp_path / "f")]) == 2
    assert "existing file" in capsys.readouterr().err


def test_an_unknown_protocol_is_refused_by_name_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["claims", "--protocol", "adam", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "argument --protocol: invalid choice: 'adam'" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=r"--protocol must be one of \['sgd', 'paper', 'both'\], got 'adam'"):
        ClaimsJob(protocol="adam").validate()
