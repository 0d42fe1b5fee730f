"""theory.empirical.stats: paired intervals against scipy, every verdict of every hypothesis."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from theory.empirical.stats import (AGAINST, FOR, INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, UNDECIDED, Hypothesis,
                                    Metric, claim_status, compare, confidence_level)

LOSS = Metric("loss", "a loss")
ACC = Metric("acc", "an accuracy", better="higher")


def _pair(d, seed=0):
    """Reference losses of varying scale and treatments with exactly the log ratios d."""
    ref = np.exp(np.random.default_rng(seed).normal(1.0, 0.5, size=len(d)))
    return list(ref * np.exp(np.asarray(d))), list(ref)


def test_interval_and_p_value_match_scipys_paired_t_test():
    rng = np.random.default_rng(3)
    ref = np.exp(rng.normal(0, 1, 12))
    treat = ref * np.exp(rng.normal(-0.05, 0.1, 12))
    for K in (1, 3):
        c = compare(treat, ref, LOSS, Hypothesis("superior"), n_comparisons=K)
        res = sps.ttest_rel(np.log(treat), np.log(ref), alternative="less")
        ci = sps.ttest_rel(np.log(treat), np.log(ref)).confidence_interval(confidence_level(K))
        assert c["ci_d"] == pytest.approx([ci.low, ci.high], rel=1e-12)
        assert c["p_value_adjusted"] == pytest.approx(min(1.0, K * res.pvalue), rel=1e-10)
        assert c["effect"] == pytest.approx(np.exp(np.mean(np.log(treat / ref))) - 1, rel=1e-12)
        assert c["cohens_dz"] == pytest.approx(np.mean(np.log(treat / ref)) / np.std(np.log(treat / ref), ddof=1))
    assert confidence_level(1) == pytest.approx(0.90) and confidence_level(3) == pytest.approx(1 - 0.1 / 3)


def test_bonferroni_widens_each_interval():
    t, r = _pair(np.random.default_rng(1).normal(-0.1, 0.1, 10))
    one = compare(t, r, LOSS, Hypothesis("superior"), n_comparisons=1)["ci_d"]
    three = compare(t, r, LOSS, Hypothesis("superior"), n_comparisons=3)["ci_d"]
    assert three[0] < one[0] < one[1] < three[1]


NOISE = np.random.default_rng(7).normal(0, 1, 10)


@pytest.mark.parametrize("hyp,d,verdict", [
    (Hypothesis("superior"), -0.2 + 0.02 * NOISE, FOR),
    (Hypothesis("superior"), +0.2 + 0.02 * NOISE, AGAINST),
    (Hypothesis("superior"), 0.3 * NOISE, UNDECIDED),
    (Hypothesis("noninferior", 0.1), 0.03 + 0.02 * NOISE, FOR),
    (Hypothesis("noninferior", 0.1), -0.5 + 0.02 * NOISE, FOR),        # better is not a degradation
    (Hypothesis("noninferior", 0.1), 0.3 + 0.02 * NOISE, AGAINST),
    (Hypothesis("noninferior", 0.1), 0.0953 + 0.02 * NOISE, UNDECIDED),
    (Hypothesis("equivalent", 0.1), 0.01 * NOISE, FOR),
    (Hypothesis("equivalent", 0.1), 0.3 + 0.02 * NOISE, AGAINST),
    (Hypothesis("equivalent", 0.1), -0.3 + 0.02 * NOISE, AGAINST),
    (Hypothesis("equivalent", 0.1), -0.08 + 0.05 * NOISE, UNDECIDED),
])
def test_every_verdict_of_every_hypothesis(hyp, d, verdict):
    t, r = _pair(d)
    assert compare(t, r, LOSS, hyp, n_comparisons=2)["verdict"] == verdict


def test_accuracy_is_compared_as_a_difference_with_higher_better():
    ref = np.linspace(0.3, 0.6, 8)
    c = compare(ref + 0.1 + 0.01 * NOISE[:8], ref, ACC, Hypothesis("superior"))
    assert c["verdict"] == FOR and c["effect"] == pytest.approx(0.1, abs=0.02)
    assert compare(ref - 0.1, ref + 0.01 * NOISE[:8], ACC, Hypothesis("superior"))["verdict"] == AGAINST


def test_diverged_runs_and_single_seeds_give_no_interval():
    c = compare([1.0, None, 2.0], [1.5, 1.0, float("inf")], LOSS, Hypothesis("superior"))
    assert c["verdict"] == UNDECIDED and c["diverged_positions"] == [1, 2] and "ci_d" not in c
    assert compare([1.0], [2.0], LOSS, Hypothesis("superior"))["verdict"] == UNDECIDED
    with pytest.raises(ValueError, match="one value per seed"):
        compare([1.0, 2.0], [1.0], LOSS, Hypothesis("superior"))
    with pytest.raises(ValueError, match="margin"):
        Hypothesis("equivalent", 0.0)


def test_claim_status_needs_every_comparison_and_one_against_refutes():
    assert claim_status([FOR, FOR, FOR]) == SUPPORTED
    assert claim_status([FOR, UNDECIDED, FOR]) == INCONCLUSIVE
    assert claim_status([FOR, AGAINST, UNDECIDED]) == NOT_SUPPORTED
    assert claim_status([]) == INCONCLUSIVE


def test_false_verdicts_under_a_null_effect_occur_at_the_stated_rate():
    """With no true difference each comparison must come out 'for' (and, symmetrically,
    'against') with probability alpha/K = 0.05/3 = 1/60: over 1200 simulated comparisons of 10
    seeds the counts lie within +-3.5 binomial standard deviations of 20. Without the Bonferroni
    correction the rate would be 1/20 (60 expected), which this rejects."""
    rng = np.random.default_rng(11)
    counts = {FOR: 0, AGAINST: 0, UNDECIDED: 0}
    for _ in range(1200):
        t, r = _pair(rng.normal(0, 0.1, 10), seed=int(rng.integers(1 << 30)))
        counts[compare(t, r, LOSS, Hypothesis("superior"), n_comparisons=3)["verdict"]] += 1
    sd = np.sqrt(1200 * (1 / 60) * (59 / 60))
    for v in (FOR, AGAINST):
        assert abs(counts[v] - 20) < 3.5 * sd, counts


def _fake_runs(arm_curves):
    """{arm key: [RunResult per seed]} with held-out curves [L_0, L_T] given per arm."""
    from theory.empirical.runs import RunResult
    return {key: [RunResult(key, s, [1], rounds=[0, 10], upload_floats=[0, 10],
                            metrics={"heldout": list(c), "train": list(c)}) for s, c in enumerate(curves)]
            for key, curves in arm_curves.items()}


@pytest.mark.parametrize("start,verdict", [(20.0, FOR), (10.5, UNDECIDED)])
def test_a_margin_claim_needs_training_progress_larger_than_twice_the_margin(start, verdict):
    """Two arms within 1% of each other are equivalent only if training moved the loss by far
    more than the 10% margin (here 10 -> 20 fell 50%; 10.5 -> 10 fell 5%: nothing to tell apart)."""
    from theory.empirical.claims import build_claims, evaluate
    claim5 = build_claims(0.10)[4]
    rng = np.random.default_rng(0)
    curves = {a.key: [(start, 10.0 * (1 + 0.01 * rng.standard_normal())) for _ in range(8)]
              for a in claim5.arms}
    entry = evaluate(claim5, "fake", _fake_runs(curves), list(range(8)), {})
    comps = entry["evidence"]["by_metric"]["heldout"]["comparisons"]
    assert all(c["verdict"] == verdict for c in comps)
    assert entry["status"] == (SUPPORTED if verdict == FOR else INCONCLUSIVE)
    if verdict == UNDECIDED:
        assert "too little training" in comps[0]["reason"]
