"""Proposition D.4, Theorem 4.4, Corollary 4.5 and FedAvg recovery on tiny settings, each
checker against a mutant that must make it fail."""
from dataclasses import replace

import numpy as np
import pytest

from theory import checks_convergence as conv
from theory import checks_smoothness as smooth
from theory.experiment import evaluate

from . import mutants as M

TINY = replace(conv.BASE, name="tiny", rounds=5)


@pytest.mark.parametrize("which", ["instance", "client", "global"])
def test_prop_d4_verified_on_reference(which):
    res = smooth.check(which)
    assert res.status == "verified" and 0 < res.evidence["max_measured_over_claimed"] <= 1


@pytest.mark.parametrize("which", ["instance", "client"])
def test_prop_d4_sketch_statements_fail_with_an_overscaled_sketch(which):
    res = smooth.check(which, law=M.overscaled_law)
    assert res.status == "violated" and res.evidence["max_measured_over_claimed"] > 1


def test_prop_d4_global_fails_with_inverted_l_bar():
    assert smooth.check("global", l_bar_fn=M.inverted_l_bar).status == "violated"


def test_evaluate_is_deterministic_and_measures_within_condition():
    a = evaluate(TINY, 0.004, 3)
    b = evaluate(TINY, 0.004, 3)
    assert a.lhs_per_seed == b.lhs_per_seed and a.rhs == b.rhs
    assert a.within_conditions and a.lhs_ucb <= a.rhs["rhs"]
    assert len(a.lhs_curve) == len(a.rhs_curve) == TINY.rounds
    assert all(v.method in ("exact", "exact at points", "bounded") for v in a.constants.values())


def test_theorem_verified_on_reference_and_violated_by_a_wrong_bound():
    ok = conv.theorem_status(conv.theorem_grid([TINY], 4))
    assert ok.status == "verified" and 0 < ok.evidence["tightness_max"] < 1
    noiseless = replace(TINY, name="noiseless", ratios=(1.0,), batch_size=None, heterogeneity=0.0)
    bad = conv.theorem_status(conv.theorem_grid([noiseless], 4, rhs_fn=M.rhs_without_optimisation_term))
    assert bad.status == "violated"
    ce = bad.evidence["counterexample"]
    assert ce["lhs_ucb95"] > ce["rhs"] and ce["setting"] == "noiseless"


def test_above_limit_runs_are_outside_conditions():
    inside = conv.theorem_grid([TINY], 3)[0]
    res = conv.above_limit(inside, seeds=2, factors=(4.0, 256.0))
    assert res.status == "outside_conditions"
    runs = res.evidence["runs"]
    assert runs[0]["gamma"] == pytest.approx(4 * inside.gamma_max) and runs[1]["diverged"]


def test_corollary_verified_on_reference_and_violated_by_double_scaled_sketch():
    base = replace(conv.BASE, name="cor", rounds=6, ratios=(1.0,))
    ok, data = conv.corollary(base, seeds=3, boot=50)
    assert ok.status == "verified" and len(data["rows"]) == 4
    assert np.isfinite(ok.evidence["fitted_exponent"])
    bad, _ = conv.corollary(base, seeds=3, boot=50, algorithm=M.DoubleScaledSubmatrixFSLoRA())
    assert bad.status == "violated"


def test_fedavg_recovery_and_its_mutant():
    assert conv.fedavg().status == "verified"
    res = conv.fedavg(algorithm=M.SummingFSLoRA())
    assert res.status == "violated" and res.evidence["errors"]["FSLoRA vs FedAvg iterates"] > 1e-6
