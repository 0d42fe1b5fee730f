"""The exact tests behind the frequency checks, their stated power, and the sequential Monte Carlo p-value."""
import numpy as np
import pytest

from fslora_ref.conformance.stats import (binomial_pmf, binomial_pvalue, binomial_pvalues, detectable_bias,
                                          rejection_probability, sequential_uniform_pvalue)

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("n,p", [(50, 0.25), (200, 1 / 28), (37, 0.5), (10, 0.9), (3000, 0.3)])
def test_binomial_matches_scipy(n, p):
    assert np.allclose(binomial_pmf(n, p), scipy_stats.binom.pmf(np.arange(n + 1), n, p), rtol=1e-9, atol=1e-300)
    table = binomial_pvalues(n, p)
    for x in range(0, n + 1, max(1, n // 9)):
        assert binomial_pvalue(x, n, p) == pytest.approx(scipy_stats.binomtest(x, n, p).pvalue, rel=1e-8)
        assert table[x] == pytest.approx(binomial_pvalue(x, n, p), rel=1e-12)


def test_degenerate_probabilities():
    assert binomial_pvalue(10, 10, 1.0) == 1.0
    assert binomial_pvalue(9, 10, 1.0) == 0.0
    assert binomial_pvalue(0, 10, 0.0) == 1.0


def test_stated_power_is_the_exact_rejection_probability():
    # the figures: 200 rounds, Bonferroni over 1312 tests, alpha 1e-3, power 1/2
    threshold = 1e-3 / 1312
    assert [round(detectable_bias(200, p, threshold), 2) for p in (0.25, 0.5, 0.75)] == [0.63, 0.35, 0.21]
    delta = detectable_bias(2000, 0.5, threshold, power=0.9)
    # at the stated bias the test rejects with probability >= 0.9, a little below it does not (both directions)
    for sign in (1, -1):
        assert rejection_probability(2000, 0.5, threshold, 0.5 * (1 + sign * delta)) >= 0.9
    assert min(rejection_probability(2000, 0.5, threshold, 0.5 * (1 + s * (delta - 0.01))) for s in (1, -1)) < 0.9
    # and the level holds: under the null it rejects with probability <= threshold
    assert rejection_probability(2000, 0.5, threshold, 0.5) <= threshold


def test_sequential_pvalue_has_no_floor_above_the_threshold_and_keeps_its_level(rng):
    skewed = np.array([300] + [100] * 14)
    for threshold in (1e-3, 1e-5):
        p, used = sequential_uniform_pvalue(skewed, rng, threshold)
        assert p < threshold / 10 and used == int(np.ceil(20 / threshold))
    # Level: over 300 null data sets P(p <= 0.1) <= 0.1 exactly; the count is then at most Binomial(300, 0.1),
    # whose 1 - 1e-6 quantile is 58 (false-alarm rate of this assertion < 1e-6)
    null = rng.multinomial(1500, np.full(15, 1 / 15), size=300)
    rejections = sum(sequential_uniform_pvalue(c, rng, 0.1)[0] <= 0.1 for c in null)
    assert 5 <= rejections <= 58
