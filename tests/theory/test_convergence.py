"""Proposition D.4, Theorem 4.4, Corollary 4.5 and stationarity on the quick profile: each checker
verified on the reference and violated by a biased implementation; constants never from the candidate."""
import numpy as np
import pytest

from theory.paper import corollary as cor
from theory.paper import smoothness as smooth
from theory.paper import theorem as thm
from theory.paper.stationary import check_stationary
from theory.experiment import reference_step
from theory.implementations import load_runner, runner_for
from theory.profiles import QUICK

from tests.mutants import theory_mutants as M

SETTING = QUICK.host          # stationarity, above the limit, the corollary (N = 2: cheap)
THEOREM = QUICK.theorem[0]    # Theorem 4.4's informative quick setting


@pytest.fixture(scope="module")
def reference():
    return runner_for(None)


@pytest.fixture(scope="module")
def missing_scale():
    return load_runner("tests.mutants.missing_scale:impl")


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


def test_theorem_is_checked_where_it_can_fail(reference):
    out = thm.theorem_setting(reference, THEOREM, QUICK.seeds)
    row = out.to_json()
    assert out.within and row["gamma"] <= row["gamma_max"]
    assert row["reference_lhs_fall_factor"] >= 10            # the LHS really decays over the run
    assert row["informative"] <= 0.5 and row["is_informative"]   # a run that never moves fails it (issue 18)
    res = thm.theorem_status([out])
    assert res.status == "verified" and "its LHS fell" in res.key
    assert 0 < row["lhs_over_rhs"] < 1
    # L covers the sketched points [B S; A] (Proposition D.4), which sit farther out than X
    assert "sketched point" in out.constants.values["L"].note


def test_theorem_is_violated_by_a_biased_implementation_with_the_reference_constants(reference, missing_scale):
    ok = thm.theorem_setting(reference, THEOREM, QUICK.seeds)
    bad = thm.theorem_setting(missing_scale, THEOREM, QUICK.seeds)
    assert bad.rhs == ok.rhs and bad.lr == ok.lr                  # the candidate cannot inflate its own RHS
    res = thm.theorem_status([bad])
    assert res.status == "violated" and res.evidence["counterexample"]["lhs_ucb95"] > bad.rhs["rhs"]


def test_a_round_that_never_moves_violates_the_theorem():
    bad = thm.theorem_setting(runner_for(M.NoOpFSLoRA()), THEOREM, QUICK.seeds)
    res = thm.theorem_status([bad])
    assert res.status == "violated", res.key
    assert res.evidence["counterexample"]["lhs_fall_factor"] == pytest.approx(1.0)   # its own LHS, not the reference's


def test_a_vacuous_setting_alone_cannot_verify_the_theorem(reference):
    out = thm.theorem_setting(reference, SETTING, QUICK.seeds)      # N = 2, k/r = 1/2: RHS ~ 12 ||grad f^S(X^0)||^2
    assert out.informative > 1
    res = thm.theorem_status([out])
    assert res.status == "inconclusive" and "vacuous" in res.key


def test_above_limit_is_a_measurement(reference):
    res = thm.above_limit(reference, SETTING, 2, 60, factors=(4.0, 256.0))
    assert res.status == "measurement"
    runs = res.evidence["runs"]
    assert runs[0]["gamma"] == pytest.approx(4 * res.evidence["gamma_max"]) and runs[1]["diverged"]


def test_corollary_holds_on_reference_with_rate_minus_one_half(reference):
    res, data = cor.corollary(reference, SETTING, QUICK.corollary_seeds, QUICK.corollary_factors,
                              step_seeds=QUICK.seeds)
    ev = res.evidence
    assert res.status == "verified", res.key
    assert len(ev["runs"]) == 3 and all(r["within_condition"] for r in ev["runs"])
    assert ev["runs"][0]["T"] >= ev["T_min"]
    lo, hi = ev["T_exponent_ci95"]
    assert lo <= -0.5 + cor.RATE_SLACK and -0.7 < ev["T_exponent"] < -0.35
    assert data["T"] == [r["T"] for r in ev["runs"]]


def test_corollary_is_violated_by_a_biased_implementation(missing_scale):
    res, _ = cor.corollary(missing_scale, SETTING, QUICK.corollary_seeds, QUICK.corollary_factors,
                           step_seeds=QUICK.seeds)
    assert res.status == "violated"


def test_rate_rule_catches_a_plateau():
    # a plateau at 1 plus a T^-1/2 transient decays like T^-0.1 here: far slower than the bound allows
    T = np.array([700.0, 1050.0, 1575.0])
    per_seed = [np.array([1.0 + 3 / np.sqrt(t)] * 3) * (1 + 0.01 * np.arange(3)) for t in T]
    slope, (lo, hi) = cor.fit_exponent(np.log(T), per_seed)
    assert lo > -0.5 + cor.RATE_SLACK


def test_stationarity_on_reference(reference):
    res = check_stationary(reference, SETTING, QUICK.stationary_seeds, QUICK.seeds)
    ev = res.evidence
    assert res.status == "verified", res.key
    assert ev["rho_sketched"] < 0.6 and ev["rho_plain"] > 0.9 and ev["gap"] > 10


def test_stationarity_violated_by_an_implementation_settling_elsewhere():
    res = check_stationary(load_runner("tests.mutants.first_k:impl"), SETTING, QUICK.stationary_seeds, QUICK.seeds)
    assert res.status == "violated" and "does not shrink" in res.key


def test_stationarity_sees_an_implementation_settling_at_a_stationary_point_of_f():
    res = check_stationary(load_runner("tests.mutants.no_sketch:impl"), SETTING, QUICK.stationary_seeds, QUICK.seeds)
    assert res.status == "violated" and res.evidence["gap"] < 1     # ||grad f|| -> 0 while ||grad f^S|| does not


def test_reference_step_is_inside_the_condition_of_its_own_constants():
    lr, consts, within = reference_step(SETTING, QUICK.seeds, SETTING.rounds)
    _, gmax, _ = consts.choose_c_h(SETTING, lr, SETTING.rounds)
    assert within and lr <= gmax and consts["L"] >= consts.values["L"].value > 0
