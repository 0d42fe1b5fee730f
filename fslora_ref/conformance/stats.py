"""Exact tests for the sketch's selection frequencies (numpy + math only).

binomial_pvalue: exact two-sided p-value (sum of the probabilities no larger than the
observed one, as scipy's binomtest). Rounds are independent, so under a correct sampler the
count of rounds selecting index j is exactly Binomial(R, k/r) and of rounds selecting both j
and l exactly Binomial(R, k(k-1)/(r(r-1))); Bonferroni over all tests keeps the family-wise
false-alarm rate <= alpha.

monte_carlo_pvalue: the p-value (1 + #{T* >= T}) / (M + 1) of a statistic against M draws
from its exact null; P(p <= alpha) <= alpha holds exactly for any M.
"""
from __future__ import annotations

from functools import lru_cache
from math import lgamma, log

import numpy as np


def binomial_pmf(n: int, p: float) -> np.ndarray:
    """P(X = x) for x = 0..n, X ~ Binomial(n, p), exact up to float rounding."""
    return _pmf(int(n), float(p)).copy()


@lru_cache(maxsize=256)
def _pmf(n: int, p: float) -> np.ndarray:
    x = np.arange(n + 1)
    if p <= 0.0 or p >= 1.0:
        out = np.zeros(n + 1)
        out[0 if p <= 0.0 else n] = 1.0
        return out
    logc = np.array([lgamma(n + 1) - lgamma(v + 1) - lgamma(n - v + 1) for v in x])
    return np.exp(logc + x * log(p) + (n - x) * log(1.0 - p))


def binomial_pvalue(count: int, n: int, p: float) -> float:
    """Exact two-sided p-value of ``count`` successes in ``n`` trials against probability ``p``."""
    pmf = _pmf(int(n), float(p))
    # 1 + 1e-7 relative slack: ties in probability must count as "as extreme" despite rounding
    return float(min(1.0, pmf[pmf <= pmf[count] * (1 + 1e-7)].sum()))


def chi_square(counts, expected) -> float:
    counts = np.asarray(counts, float)
    expected = np.asarray(expected, float)
    return float(np.sum((counts - expected) ** 2 / expected))


def uniform_multinomial_pvalue(counts, rng: np.random.Generator, draws: int = 4999) -> float:
    """Monte Carlo p-value of the chi-square statistic of ``counts`` against a uniform
    multinomial over len(counts) cells (exact level for any number of draws)."""
    counts = np.asarray(counts)
    n, cells = int(counts.sum()), counts.size
    expected = np.full(cells, n / cells)
    observed = chi_square(counts, expected)
    null = rng.multinomial(n, np.full(cells, 1.0 / cells), size=draws)
    null_stats = np.sum((null - expected) ** 2 / expected, axis=1)
    return float((1 + np.sum(null_stats >= observed * (1 - 1e-12))) / (draws + 1))


def bonferroni_threshold(alpha: float, n_tests: int) -> float:
    return alpha / max(1, n_tests)


__all__ = ["binomial_pmf", "binomial_pvalue", "chi_square", "uniform_multinomial_pvalue", "bonferroni_threshold"]
