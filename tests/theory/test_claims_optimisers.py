"""The claims' second protocol: the paper's optimisers (client AdamW, server Adam where the algorithm's paper
has a server step), its per-algorithm step tuning, and the full horizon of the two-layer family."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fslora_ref.algorithms import ALGORITHMS, FSLoRA
from theory.empirical import claims as claims_mod
from theory.empirical import engine, tuning_paper
from theory.empirical.protocols import PROTOCOLS, SERVER_STEPPED, protocol, selected
from theory.empirical.runs import Arm, run_arm
from theory.empirical.settings import settings_for
from theory.empirical.store import RunStore

RATIOS = ("ratios", claims_mod.PAPER_RATIOS)
TINY = dict(quick=True, rounds=6, clients=4)


class AlwaysDivergesFSLoRA(FSLoRA):
    """Non-finite after the first round at every step: no step of the paper grid is usable."""

    def aggregate(self, state, plans, uploads, config):
        new = super().aggregate(state, plans, uploads, config)
        new.layers = [(B * np.inf, A) for B, A in new.layers]
        return new


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_each_protocol_configures_the_optimisers_of_its_source(algorithm):
    arm = Arm(algorithm, algorithm, 8, RATIOS)
    sgd = settings_for("least_squares", protocol="sgd", **TINY).with_lr(0.03).config(arm, 0)
    paper = settings_for("least_squares", protocol="paper", **TINY).with_lr(0.03).config(arm, 0)
    assert (sgd.client_optimizer, sgd.server_optimizer) == ("sgd", "none")
    assert paper.client_optimizer == "adamw" and paper.lr == 0.03 and paper.weight_decay == 0.0
    if algorithm in SERVER_STEPPED:        # FSLoRA, FedIT, HetLoRA: the paper's code steps the server with Adam
        assert (paper.server_optimizer, paper.server_lr) == ("adam", 0.03)
    else:                                  # FlexLoRA, FLoRA: their papers' servers have no optimiser step
        assert paper.server_optimizer == "none"


def test_the_protocols_change_the_runs_and_each_is_deterministic():
    arm = Arm("fslora", "fslora", 8, RATIOS)
    runs = {p: run_arm(arm, settings_for("least_squares", protocol=p, **TINY).with_lr(0.01), 0) for p in PROTOCOLS}
    assert runs["sgd"].metrics["heldout"][-1] != runs["paper"].metrics["heldout"][-1]
    again = run_arm(arm, settings_for("least_squares", protocol="paper", **TINY).with_lr(0.01), 0)
    assert again.to_json() == runs["paper"].to_json()


def test_protocol_choices_are_checked_by_name():
    assert selected("both") == ["sgd", "paper"] and selected("paper") == ["paper"]
    with pytest.raises(ValueError, match=r"--protocol must be one of \['both', 'paper', 'sgd'\], got 'adam'"):
        selected("adam")
    with pytest.raises(ValueError, match="--protocol must be one of"):
        protocol("both")


def test_paper_tuning_descends_to_a_local_best_of_the_grid_on_the_tuning_seeds():
    settings = settings_for("least_squares", protocol="paper", **TINY)
    arm = tuning_paper.tuning_arm("fslora", 8, claims_mod.PAPER_RATIOS)
    record = tuning_paper.tune_algorithm(settings, arm, (1000, 1001))
    grid = record["grid"]
    assert grid == [0.016 * 2.0 ** j for j in range(-4, 5)] and record["seeds"] == [1000, 1001]
    scores = {t["lr"]: t["heldout_final_mean"] if t["stable"] else math.inf for t in record["tried"]}
    assert record["tried"][0]["lr"] == tuning_paper.BASE                       # the descent starts at the base
    assert record["chosen"] == min(scores, key=scores.get)                     # the best step scored
    i = grid.index(record["chosen"])
    for j in (i - 1, i + 1):                                                   # both neighbours scored and no better
        if 0 <= j < len(grid):
            assert grid[j] in scores and scores[grid[j]] >= scores[record["chosen"]]
    scored = sorted(grid.index(lr) for lr in scores)
    assert scored == list(range(scored[0], scored[-1] + 1))                    # a contiguous walk, no jumps
    for t in record["tried"]:
        if t["stable"]:
            finals = [r["heldout_final"] for r in t["runs"]]
            assert len(finals) == 2 and t["heldout_final_mean"] == pytest.approx(sum(finals) / 2, rel=1e-15)
    assert "lowest mean held-out loss" in tuning_paper.describe(record)


def test_paper_protocol_tunes_once_per_algorithm_and_every_arm_shares_its_step(tmp_path):
    claims = claims_mod.build_claims()[:2]        # FSLoRA at several (r, k), the four baselines, FedIT at two ranks
    store = RunStore(tmp_path / "runs.json", resume=False)
    entries, runs, _, tuned = engine.run_claims(claims, ["least_squares"], [0, 1], quick=True, store=store, rounds=4,
                                                clients=4, protocol="paper")
    steps = {}
    for arm in engine.needed_arms(claims):
        record = tuned["least_squares"][arm.key]
        assert record["arm"] == f"{arm.algorithm}|r=16|ratios,(0.125, 0.25, 0.5, 0.75)"
        steps.setdefault(arm.algorithm, record["chosen"])
        assert record["chosen"] == steps[arm.algorithm]
        assert all(r.lr == record["chosen"] for r in runs["least_squares"][arm.key])
    assert set(steps) == {"fslora", "hetlora", "flexlora", "flora", "fedit"}
    assert sum(key.startswith("paper/tune/") for key in store.units) == 5      # five tunings, not one per arm
    assert all(e["protocol"] == "paper" and e["id"].endswith(".paper") for e in entries)


def test_an_algorithm_with_no_usable_paper_step_is_not_run(tmp_path):
    claim = claims_mod.build_claims()[0]
    entries, runs, _, tuned = engine.run_claims([claim], ["least_squares"], [0, 1], quick=True, rounds=4, clients=4,
                                                store=RunStore(tmp_path / "r.json", resume=False), protocol="paper",
                                                algorithms=dict(ALGORITHMS, fslora=AlwaysDivergesFSLoRA))
    record = tuned["least_squares"][claim.arm("fslora").key]
    assert record["chosen"] is None and not any(t["stable"] for t in record["tried"])
    assert all(r.diverged_at == 0 and r.diverged_reason.startswith("not run: no usable step")
               for r in runs["least_squares"][claim.arm("fslora").key])
    assert entries[0]["status"] == "inconclusive"


def test_the_two_layer_family_has_the_longer_full_horizon():
    assert settings_for("two_layer", quick=False).rounds == 250
    assert settings_for("least_squares", quick=False).rounds == settings_for("logistic", quick=False).rounds == 100
    assert settings_for("two_layer", quick=True).rounds == 30 and settings_for("two_layer", False, rounds=7).rounds == 7
