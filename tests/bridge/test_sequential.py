"""The LLM claim's sequential plan and intersection-union test (llm_bridge.sequential), against hand
computations, with mutants showing each check can fail."""
from math import e, log, sqrt

import numpy as np
import pytest

from llm_bridge.sequential import (INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, SequentialPlan, intersection_union_test,
                                   look_status, one_sided_p, spending)

# Student t with 2 degrees of freedom has the closed-form cdf F(t) = 1/2 + t / (2 sqrt(2 + t^2))
D_HETLORA = [-1.0, -2.0, -3.0]      # mean -2, sd 1:       t = -2 sqrt(3)
D_FLORA = [-1.0, -1.0, -4.0]        # mean -2, sd sqrt(3): t = -2
P_HETLORA = 0.5 - sqrt(12) / (2 * sqrt(14))     # 0.03709
P_FLORA = 0.5 - 2 / (2 * sqrt(6))               # 0.09175


def test_one_sided_p_matches_the_closed_form_t2_cdf():
    assert one_sided_p(D_HETLORA) == pytest.approx(P_HETLORA, rel=1e-12)
    assert one_sided_p(D_FLORA) == pytest.approx(P_FLORA, rel=1e-12)
    assert one_sided_p(D_FLORA, "greater") == pytest.approx(1 - P_FLORA, rel=1e-12)
    assert one_sided_p([-1.0, -1.0]) == 0.0 and one_sided_p([0.0, 0.0]) == 1.0   # no spread
    with pytest.raises(ValueError, match="at least 2 seeds"):
        one_sided_p([-1.0])


def test_iut_rejects_only_when_every_test_rejects_at_the_full_level():
    d = {"hetlora": D_HETLORA, "flora": D_FLORA}
    at_10 = intersection_union_test(d, 0.10)
    assert at_10["rejects"] and at_10["p_iut"] == pytest.approx(P_FLORA, rel=1e-12)
    assert at_10["p_values"]["hetlora"] == pytest.approx(P_HETLORA, rel=1e-12)
    # at 0.05 hetlora's test rejects (0.037) but flora's does not (0.092): the claim is not shown.
    # A mutant IUT that takes the smallest p (a union-intersection test) would wrongly reject here.
    at_05 = intersection_union_test(d, 0.05)
    assert not at_05["rejects"] and min(at_05["p_values"].values()) <= 0.05
    # no Bonferroni: every test at the full level (0.09175 <= 0.095, while 0.095 / 2 would refuse)
    assert intersection_union_test(d, 0.095)["rejects"]


def test_plan_looks_and_pocock_spending_by_hand():
    plan = SequentialPlan()
    assert plan.looks() == [3, 5, 7, 9]
    hand = [0.05 * log(1 + (e - 1) * n / 9) for n in (3, 5, 7, 9)]
    assert plan.levels() == pytest.approx([hand[0], hand[1] - hand[0], hand[2] - hand[1], hand[3] - hand[2]], rel=1e-12)
    assert sum(plan.levels()) == pytest.approx(0.05, rel=1e-12) and spending(0.0, 0.05) == 0.0
    assert SequentialPlan(2, 3, 7).looks() == [2, 5, 7]   # the last group may be smaller
    for bad, match in ((SequentialPlan(pilot=1), "--pilot-seeds"), (SequentialPlan(step=0), "--seed-step"),
                       (SequentialPlan(max_seeds=2), "--max-seeds"), (SequentialPlan(alpha=0.5), "--false-alarm-rate")):
        with pytest.raises(ValueError, match=match):
            bad.validate()


def _seeds(values, n):
    return {k: list(v)[:n] for k, v in values.items()}


def test_stopping_rule():
    plan = SequentialPlan(pilot=3, step=2, max_seeds=7, alpha=0.05)
    clear = {"hetlora": [-0.30, -0.31, -0.29, 0.5, 0.5, 0.5, 0.5], "flora": [-0.20, -0.22, -0.21, 0.4, 0.4, 0.4, 0.4]}
    before = look_status(plan, _seeds(clear, 2))
    assert before["status"] == INCONCLUSIVE and not before["stopped"] and before["next_seeds"] == 3
    first = look_status(plan, _seeds(clear, 3))
    assert first["status"] == SUPPORTED and first["stopped"] and first["look"] == 1
    # seeds added after the plan stopped do not change its verdict (it looks only at its looks)
    assert look_status(plan, clear)["status"] == SUPPORTED and look_status(plan, clear)["look"] == 1

    noisy = {"hetlora": [-0.3, 0.2, -0.1, -0.2, 0.1, 0.0, -0.1], "flora": [-0.1, -0.2, -0.3, -0.2, -0.1, -0.3, -0.2]}
    at3 = look_status(plan, _seeds(noisy, 3))
    assert at3["status"] == INCONCLUSIVE and not at3["stopped"] and at3["next_seeds"] == 5
    at4 = look_status(plan, _seeds(noisy, 4))   # between looks: still look 1's decision
    assert at4["look"] == 1 and at4["next_seeds"] == 5
    last = look_status(plan, noisy)
    assert last["status"] == INCONCLUSIVE and last["stopped"] and last["next_seeds"] is None and "exhausted" in last["reason"]

    worse = {"hetlora": [0.30, 0.31, 0.29], "flora": [-0.2, -0.1, -0.3]}
    st = look_status(plan, worse)
    assert st["status"] == NOT_SUPPORTED and st["stopped"] and "hetlora" in st["reason"]
    with pytest.raises(ValueError, match="same seeds"):
        look_status(plan, {"hetlora": [0.1, 0.2, 0.3], "flora": [0.1, 0.2]})


def _rejection_rate(plan, means, sims, rng, decide):
    hits = 0
    for _ in range(sims):
        d = {k: rng.normal(m, 1.0, plan.max_seeds) for k, m in means.items()}
        hits += decide(plan, d)
    return hits / sims


def test_error_rate_at_the_null_boundary_and_a_naive_mutant():
    """Monte Carlo, fixed seed: one baseline exactly as good as FSLoRA (mean d = 0), the others far
    worse, so the IUT rejects almost only when the tie's test rejects. 3000 sequences: binomial sd of
    a 5% rate 0.004; the plan must stay below 0.05 + 3 sd, and a mutant that tests every look at the
    full 0.05 (no spending) must exceed it."""
    plan, sims, tol = SequentialPlan(pilot=3, step=2, max_seeds=9, alpha=0.05), 3000, 3 * sqrt(0.05 * 0.95 / 3000)
    means = {"hetlora": 0.0, "flexlora": -3.0, "flora": -3.0}

    def planned(plan, d):
        return look_status(plan, d)["status"] == SUPPORTED

    def naive(plan, d):
        return any(intersection_union_test({k: v[:n] for k, v in d.items()}, plan.alpha)["rejects"] for n in plan.looks())

    rate = _rejection_rate(plan, means, sims, np.random.default_rng(20261206), planned)
    assert rate <= 0.05 + tol
    assert _rejection_rate(plan, means, sims, np.random.default_rng(20261206), naive) > 0.05 + tol
    # and it has power when FSLoRA is clearly better than all three (mean d = -2 sd; measured 0.99; at -1.5 sd
    # 0.74, at -1 sd 0.19: with at most 9 seeds only large consistent effects can be shown)
    assert _rejection_rate(plan, {k: -2.0 for k in means}, 300, np.random.default_rng(7), planned) > 0.9
