"""Exact tests for the sketch's selection frequencies, and the power they have (numpy + math only).

binomial_pvalue: exact two-sided p-value (sum of the probabilities no larger than the
observed one, as scipy's binomtest). Rounds are independent, so under a correct sampler the
count of draws selecting index j is exactly Binomial(T, k/r) and of draws selecting both j
and l exactly Binomial(T, k(k-1)/(r(r-1))); Bonferroni over all tests keeps the family-wise
false-alarm rate <= alpha.

detectable_bias: the smallest relative inclusion bias delta (the index is selected with
probability p(1 + delta) or p(1 - delta)) that one such exact test at level ``threshold`` over
``trials`` draws rejects with probability >= ``power``: computed exactly from the test's
rejection region, not from a normal approximation.

sequential_uniform_pvalue: the chi-square statistic of ``counts`` against a uniform multinomial,
with a sequential Monte Carlo p-value (Besag & Clifford 1991): null draws until ``hits`` of them
reach the observed statistic (p = hits / draws) or ``max_draws`` are used (p = (1 + hits) / (1 +
max_draws)). P(p <= u) <= u holds exactly for every u, and max_draws is chosen so that the
smallest reachable p-value is far below the threshold it is compared with: no floor above alpha.
"""
from __future__ import annotations

from functools import lru_cache
from math import ceil, erfc, log, sqrt

import numpy as np


def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))])


def binomial_pmf(n: int, p: float) -> np.ndarray:
    """P(X = x) for x = 0..n, X ~ Binomial(n, p), exact up to float rounding.

    Parameters
    ----------
    n : int
        The number of trials.
    p : float
        The success probability.

    Returns
    -------
    ndarray, shape (n + 1,)

    Examples
    --------
    >>> from fslora_ref.conformance.stats import binomial_pmf
    >>> binomial_pmf(2, 0.5).tolist()
    [0.25, 0.5, 0.25]
    """
    return _pmf(int(n), float(p)).copy()


@lru_cache(maxsize=512)
def _pmf(n: int, p: float) -> np.ndarray:
    if p <= 0.0 or p >= 1.0:
        out = np.zeros(n + 1)
        out[0 if p <= 0.0 else n] = 1.0
        return out
    x = np.arange(n + 1)
    lf = _log_factorials(n)
    return np.exp(lf[n] - lf[x] - lf[n - x] + x * log(p) + (n - x) * log(1.0 - p))


def binomial_pvalue(count: int, n: int, p: float) -> float:
    """Exact two-sided p-value of ``count`` successes in ``n`` trials against probability ``p``.

    Parameters
    ----------
    count : int
        The successes observed.
    n : int
        The number of trials.
    p : float
        The success probability.

    Returns
    -------
    float
    """
    pmf = _pmf(int(n), float(p))
    # 1 + 1e-7 relative slack: ties in probability must count as "as extreme" despite rounding
    return float(min(1.0, pmf[pmf <= pmf[count] * (1 + 1e-7)].sum()))


@lru_cache(maxsize=2048)
def binomial_pvalues(n: int, p: float) -> np.ndarray:
    """The exact two-sided p-value of every count 0..n (as ``binomial_pvalue``).

    Parameters
    ----------
    n : int
        The number of trials.
    p : float
        The success probability.

    Returns
    -------
    ndarray, shape (n + 1,)
        Read-only (cached).
    """
    pmf = _pmf(int(n), float(p))
    order = np.argsort(pmf, kind="stable")
    sorted_pmf = pmf[order]
    cum = np.cumsum(sorted_pmf)
    last = np.searchsorted(sorted_pmf, sorted_pmf * (1 + 1e-7), side="right") - 1
    out = np.empty(n + 1)
    out[order] = np.minimum(cum[last], 1.0)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=512)
def rejection_region(n: int, p: float, threshold: float) -> np.ndarray:
    """The counts whose exact two-sided p-value is below ``threshold``.

    Parameters
    ----------
    n : int
        The number of trials.
    p : float
        The success probability.
    threshold : float
        The test's level.

    Returns
    -------
    ndarray of bool, shape (n + 1,)
    """
    return binomial_pvalues(int(n), float(p)) < threshold


def rejection_probability(n: int, p0: float, threshold: float, p1: float) -> float:
    """P(the exact test of Binomial(n, p0) at ``threshold`` rejects) when the true probability is p1.

    Parameters
    ----------
    n : int
        The number of trials.
    p0 : float
        The null probability.
    threshold : float
        The test's level.
    p1 : float
        The true probability.

    Returns
    -------
    float
    """
    return float(_pmf(int(n), float(p1))[rejection_region(int(n), float(p0), float(threshold))].sum())


def detectable_bias(trials: int, p: float, threshold: float, power: float = 0.5) -> float:
    """The smallest relative bias delta such that both p(1 + delta) and p(1 - delta) are rejected with
    probability >= ``power`` by the exact test at ``threshold`` over ``trials`` draws.

    Parameters
    ----------
    trials : int
        The number of draws.
    p : float
        The success probability.
    threshold : float
        The test's level.
    power : float, default 0.5
        The detection probability asked for.

    Returns
    -------
    float
        delta, or inf if none <= 1 qualifies.
    """
    if not (0.0 < p < 1.0) or trials < 1:
        return float("inf")
    worst = 0.0
    for sign in (1.0, -1.0):
        top = min(1.0, (1.0 - p) / p) if sign > 0 else 1.0
        if rejection_probability(trials, p, threshold, min(p * (1 + top), 1.0) if sign > 0 else 0.0) < power:
            return float("inf")
        lo, hi = 0.0, top
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            q = p * (1 + sign * mid)
            if rejection_probability(trials, p, threshold, q) >= power:
                hi = mid
            else:
                lo = mid
            if hi - lo < 2e-4:
                break
        worst = max(worst, hi)
    return worst


def normal_quantile(tail: float) -> float:
    """z with P(Z > z) = tail (bisection on erfc).

    Parameters
    ----------
    tail : float
        In (0, 1/2].

    Returns
    -------
    float
    """
    lo, hi = 0.0, 40.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if 0.5 * erfc(mid / sqrt(2.0)) > tail:
            lo = mid
        else:
            hi = mid
    return hi


def trials_for_bias(p: float, threshold: float, bias: float, power: float = 0.5) -> int:
    """About how many draws the exact test at ``threshold`` needs to detect the relative ``bias``
    with probability ``power`` (normal approximation; the caller confirms with ``detectable_bias``).

    Parameters
    ----------
    p : float
        The success probability.
    threshold : float
        The test's level.
    bias : float
        The relative bias to detect.
    power : float, default 0.5
        The detection probability asked for.

    Returns
    -------
    int
    """
    z = normal_quantile(threshold / 2) + (normal_quantile(1 - power) if power > 0.5 else 0.0)
    return max(1, ceil((z / bias) ** 2 * (1 - p) / p))


def chi_square(counts, expected) -> float:
    """Pearson's statistic sum (counts - expected)^2 / expected.

    Parameters
    ----------
    counts : array_like
    expected : array_like
        Same shape, positive.

    Returns
    -------
    float
    """
    counts = np.asarray(counts, float)
    expected = np.asarray(expected, float)
    return float(np.sum((counts - expected) ** 2 / expected))


def sequential_uniform_pvalue(counts, rng: np.random.Generator, threshold: float, hits: int = 20,
                              chunk: int = 20_000) -> tuple:
    """Sequential Monte Carlo p-value of the chi-square statistic of ``counts`` against the uniform
    multinomial over len(counts) cells; exact level for every u, and the smallest reachable
    p-value 1 / (1 + max_draws) is at most threshold / hits.

    Parameters
    ----------
    counts : array_like of int
        Observed counts per cell.
    rng : numpy.random.Generator
        Draws the null samples.
    threshold : float
        The test's level.
    hits : int, default 20
        Stop after this many null statistics at least as large as the observed one.
    chunk : int, default 20000
        Null samples drawn at a time.

    Returns
    -------
    p : float
    used : int
        The null draws used.
    """
    counts = np.asarray(counts)
    n, cells = int(counts.sum()), counts.size
    expected = np.full(cells, n / cells)
    observed = chi_square(counts, expected) * (1 - 1e-12)
    max_draws = int(ceil(hits / threshold))
    used = found = 0
    while used < max_draws:
        size = min(chunk, max_draws - used)
        null = rng.multinomial(n, np.full(cells, 1.0 / cells), size=size)
        exceed = np.sum((null - expected) ** 2 / expected, axis=1) >= observed
        if found + int(exceed.sum()) >= hits:
            stop = int(np.flatnonzero(np.cumsum(exceed) + found >= hits)[0]) + 1
            return hits / (used + stop), used + stop
        found += int(exceed.sum())
        used += size
    return (1 + found) / (1 + max_draws), max_draws


def chi_square_detectable_deviation(draws: int, cells: int, threshold: float) -> float:
    """About the smallest relative deviation of one cell's probability (the others sharing the
    difference) that the chi-square test at ``threshold`` detects with probability 1/2
    (Wilson-Hilferty critical value; median of the noncentral chi-square ~ df + noncentrality).

    Parameters
    ----------
    draws : int
        The number of draws.
    cells : int
        The number of cells (at least 2).
    threshold : float
        The test's level.

    Returns
    -------
    float
    """
    df = cells - 1
    z = normal_quantile(threshold)
    crit = df * (1 - 2 / (9 * df) + z * sqrt(2 / (9 * df))) ** 3
    lam = max(crit - df, 0.0)
    p0 = 1.0 / cells
    return sqrt(lam * (1 - p0) / (draws * p0))


def bonferroni_threshold(alpha: float, n_tests: int) -> float:
    """The per-test level alpha / n_tests (n_tests at least 1).

    Parameters
    ----------
    alpha : float
        The family-wise level.
    n_tests : int
        The number of tests.

    Returns
    -------
    float
    """
    return alpha / max(1, n_tests)


__all__ = ["binomial_pmf", "binomial_pvalue", "binomial_pvalues", "rejection_region", "rejection_probability", "detectable_bias",
           "trials_for_bias", "chi_square", "sequential_uniform_pvalue", "chi_square_detectable_deviation",
           "bonferroni_threshold", "normal_quantile"]
