"""Sampler-only checks: ``impl.sample_sketch(rank, k, seed) -> diag(S)`` of one random-k draw.

Distinct seeds must give independent draws. S = (r/k) sum_{j in I} e_j e_j^T with I uniform
among the k-subsets (docs/spec.md §2).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from ..seeding import SERVER, stream
from .registry import check
from .session import CheckFailed, Session, fmt_set, session_for, real_array
from .stats import (binomial_pvalue, bonferroni_threshold, chi_square_detectable_deviation, detectable_bias,
                    sequential_uniform_pvalue)

SUPPORT_CASES = ((8, 1), (8, 3), (6, 6), (5, 2))
UNBIASED_CASE = (8, 3)
SUBSET_CASES = ((6, 2), (5, 3))


def draws(s: Session, rank: int, k: int, n: int, offset: int) -> np.ndarray:
    """Diagonals of the implementation's sketches from seeds offset .. offset+n-1 (cached, failures
    too), each validated: a real (rank,) vector of finite numbers, else CheckFailed naming the draw.

    Parameters
    ----------
    s : Session
        The session (its implementation and cache).
    rank : int
        r.
    k : int
        The sketch size.
    n : int
        The number of draws.
    offset : int
        The first seed.

    Returns
    -------
    ndarray, shape (n, rank)
    """
    def compute():
        out = np.empty((n, rank))
        for t in range(n):
            seed = (s.options.seed * 1_000_003 + offset + t) % 2**31
            d = real_array(s.call("sampler", rank, k, seed), f"sample_sketch({rank}, {k}, seed={seed})")
            if d.shape != (rank,):
                raise CheckFailed(f"sample_sketch({rank}, {k}, seed) returned shape {d.shape}, expected ({rank},)")
            if not np.all(np.isfinite(d)):
                raise CheckFailed(f"sample_sketch({rank}, {k}, seed={seed}) returned non-finite entries "
                                  f"{np.round(d, 4).tolist()}; diag(S) must be finite")
            out[t] = d
        return out
    return s.memo(("sampler", rank, k, n, offset), compute)


def exact_k_of_r_over_k(D: np.ndarray, k: int, tol: float) -> bool:
    """Every row has exactly k entries equal to r/k and the rest exactly 0 (a random-k draw).

    Parameters
    ----------
    D : ndarray, shape (n, r)
        Diagonals of sketches.
    k : int
        The sketch size.
    tol : float
        Relative tolerance on r/k.

    Returns
    -------
    bool
    """
    r = D.shape[1]
    nz = D != 0
    return bool(np.all(nz.sum(axis=1) == k) and np.all(np.abs(D[nz] / (r / k) - 1) <= tol))


@check("sampler")
def check_sampler_support_and_value(impl, session=None) -> str:
    """Every draw has exactly k nonzero diagonal entries, each equal to r/k, the rest exactly 0.

    Parameters
    ----------
    impl : object
        The implementation under test.
    session : Session, optional
        The rounds shared by the checks, with the per-call time limit (default: a new one).

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis.
    """
    s = session_for(impl, session)
    for c, (r, k) in enumerate(SUPPORT_CASES):
        D = draws(s, r, k, 200, 10_000 * c)
        for t, d in enumerate(D):
            nz = np.flatnonzero(d)
            if nz.size != k or np.max(np.abs(d[nz] / (r / k) - 1)) > s.tol:
                raise CheckFailed(f"rank {r}, k={k}, draw {t}: nonzero entries at {fmt_set(nz)} with values "
                                  f"{np.round(d[nz], 6).tolist()}; expected exactly {k} entries equal to r/k = {r / k:g}")
    return f"{len(SUPPORT_CASES)} (r, k) cases x 200 draws: k entries of r/k each"


@check("sampler")
def check_sampler_unbiased(impl, session=None) -> str:
    """E[S] = I: each diagonal entry averages 1.

    When every draw has exactly k entries equal to r/k (the rest 0), E[s_j] = 1 iff j is selected
    with probability k/r: exact binomial tests (Bonferroni over the r entries, false-alarm rate <=
    alpha). Otherwise: z-tests of the means (CLT approximation, stated in the diagnosis); a
    deterministic diag(S) fails unless it is exactly 1. Non-finite or malformed draws fail first.

    Parameters
    ----------
    impl : object
        The implementation under test.
    session : Session, optional
        The rounds shared by the checks, with the per-call time limit (default: a new one).

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis.
    """
    s = session_for(impl, session)
    r, k = UNBIASED_CASE
    n = s.options.sampler_draws
    D = draws(s, r, k, n, 50_000)
    means = D.mean(axis=0)
    values = np.unique(D[D != 0])
    threshold = bonferroni_threshold(s.options.alpha, r)
    if exact_k_of_r_over_k(D, k, s.tol):
        # every draw is a random-k draw: E[s_j] = 1 iff j is selected with probability k/r, exactly binomial
        p = [binomial_pvalue(int(c), n, k / r) for c in np.count_nonzero(D, axis=0)]
        test = "exact binomial on the selection counts"
    else:
        # any other values: z-tests of the means (a constant diag(S) has zero spread and fails unless it is 1)
        se = np.maximum(D.std(axis=0, ddof=1), 1e-12) / np.sqrt(n)
        p = [_normal_two_sided(float(zz)) for zz in np.abs(means - 1.0) / se]
        test = "z-test (CLT approximation; draws are not k entries of r/k)"
    j = int(np.argmin(p))
    if p[j] < threshold:
        raise CheckFailed(f"rank {r}, k={k}: mean of diag(S)_{j} over {n} draws is {means[j]:.4g}, expected 1 "
                          f"(nonzero values {np.round(values[:4], 4).tolist()}; {test} p = {p[j]:.3g} < "
                          f"alpha/r = {threshold:.3g})")
    power = detectable_bias(n, k / r, threshold)
    s.power["sampler_unbiased"] = {"rank": r, "k": k, "draws": n, "threshold": threshold, "power": 0.5,
                                   "smallest_detectable_inclusion_bias": round(power, 4)}
    return (f"rank {r}, k={k}, {n} draws: mean diag(S) in [{means.min():.3f}, {means.max():.3f}] ({test}, smallest p "
            f"{p[j]:.3g} >= alpha/r = {threshold:.3g}); power: detects an inclusion bias >= {power:.0%} of one index "
            f"(probability >= 1/2)")


def _normal_two_sided(z: float) -> float:
    from math import erfc, sqrt
    return erfc(z / sqrt(2.0))


MAX_NULL_DRAWS = 1_000_000   # the sequential Monte Carlo's cap: beyond it the chi-square part is skipped


@check("sampler")
def check_sampler_uniform_subsets(impl, session=None) -> str:
    """The index set is uniform over all C(r, k) subsets: exact binomial tests of every subset's count,
    and a chi-square test with a sequential Monte Carlo p-value whose smallest reachable value lies far
    below its threshold (no p-value floor above alpha; skipped, and said so, when that would take more
    than a million null draws).

    Parameters
    ----------
    impl : object
        The implementation under test.
    session : Session, optional
        The rounds shared by the checks, with the per-call time limit (default: a new one).

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis.
    """
    s = session_for(impl, session)
    n = s.options.sampler_draws
    per_case = bonferroni_threshold(s.options.alpha, len(SUBSET_CASES))
    report = []
    for c, (r, k) in enumerate(SUBSET_CASES):
        D = draws(s, r, k, n, 100_000 + 10_000 * c)
        cells = {I: 0 for I in combinations(range(r), k)}
        for t, d in enumerate(D):
            I = tuple(int(j) for j in np.flatnonzero(d))
            if I not in cells:
                raise CheckFailed(f"rank {r}, k={k}, draw {t}: support {fmt_set(I)} is not a {k}-subset")
            cells[I] += 1
        counts = np.array(list(cells.values()))
        C = len(cells)
        cell_threshold = bonferroni_threshold(per_case / 2, C)
        cell_p = [binomial_pvalue(int(x), n, 1.0 / C) for x in counts]
        worst = int(np.argmin(cell_p))
        subsets = list(cells)
        chi_threshold = per_case / 2
        if 20 / chi_threshold <= MAX_NULL_DRAWS:
            p, used = sequential_uniform_pvalue(counts, stream(s.options.seed, round=c, client=SERVER, purpose="eval"),
                                                chi_threshold)
            chi = f"chi-square p = {p:.3g} ({used} null draws)"
        else:
            p, used, chi = 1.0, 0, "chi-square skipped (alpha too small for a Monte Carlo p-value below it)"
        if cell_p[worst] < cell_threshold or p < chi_threshold:
            test = (f"exact binomial p = {cell_p[worst]:.3g} < alpha/(2 C) = {cell_threshold:.3g}"
                    if cell_p[worst] < cell_threshold else
                    f"chi-square sequential Monte Carlo p = {p:.3g} < {chi_threshold:.3g} ({used} null draws)")
            raise CheckFailed(f"rank {r}, k={k}: over {n} draws subset {fmt_set(subsets[worst])} appeared "
                              f"{counts[worst]} times, expected {n / C:.1f} (uniform over {C} subsets); "
                              f"{np.sum(counts == 0)} subsets never appeared; {test}")
        exact_bias = detectable_bias(n, 1.0 / C, cell_threshold)
        chi_bias = chi_square_detectable_deviation(n, C, chi_threshold)
        s.power.setdefault("sampler_uniform_subsets", {})[f"r={r},k={k}"] = {
            "draws": n, "power": 0.5, "smallest_detectable_subset_bias_exact": round(exact_bias, 4),
            "smallest_detectable_subset_bias_chi_square_approx": round(chi_bias, 4)}
        report.append(f"(r={r}, k={k}): {chi}, smallest subset p = {cell_p[worst]:.3g}; detects one subset off by "
                      f">= {exact_bias:.0%} by the exact tests, about {chi_bias:.0%} by the chi-square (approximation)")
    return (f"{len(SUBSET_CASES)} cases, {n} draws each, alpha = {s.options.alpha:g}: " + "; ".join(report)
            + " (power 1/2)")
