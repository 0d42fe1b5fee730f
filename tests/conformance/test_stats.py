"""The exact tests behind the frequency checks."""
import numpy as np
import pytest

from fslora_ref.conformance.stats import binomial_pmf, binomial_pvalue, uniform_multinomial_pvalue

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("n,p", [(50, 0.25), (200, 1 / 28), (37, 0.5), (10, 0.9)])
def test_binomial_matches_scipy(n, p):
    assert np.allclose(binomial_pmf(n, p), scipy_stats.binom.pmf(np.arange(n + 1), n, p), rtol=1e-10, atol=1e-300)
    for x in range(0, n + 1, max(1, n // 9)):
        assert binomial_pvalue(x, n, p) == pytest.approx(scipy_stats.binomtest(x, n, p).pvalue, rel=1e-8)


def test_degenerate_probabilities():
    assert binomial_pvalue(10, 10, 1.0) == 1.0
    assert binomial_pvalue(9, 10, 1.0) == 0.0
    assert binomial_pvalue(0, 10, 0.0) == 1.0


def test_monte_carlo_pvalue_rejects_skew_and_keeps_its_level(rng):
    skewed = np.array([300] + [100] * 14)
    assert uniform_multinomial_pvalue(skewed, rng, draws=999) == pytest.approx(1 / 1000)
    # Level: over 300 null data sets, P(p <= 0.1) <= 0.1 exactly; the count is then at most
    # Binomial(300, 0.1), whose 1 - 1e-6 quantile is 58 (false-alarm rate of this assertion < 1e-6).
    null = rng.multinomial(1500, np.full(15, 1 / 15), size=300)
    rejections = sum(uniform_multinomial_pvalue(c, rng, draws=199) <= 0.1 for c in null)
    assert rejections <= 58
    assert rejections >= 5  # and the p-values are not degenerate (P(Bin(300, 0.1) < 5) < 1e-8)
