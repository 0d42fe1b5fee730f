"""Sampler-only checks: ``impl.sample_sketch(rank, k, seed) -> diag(S)`` of one random-k draw.

Distinct seeds must give independent draws. S = (r/k) sum_{j in I} e_j e_j^T with I uniform
among the k-subsets (docs/spec.md §2).
"""
from __future__ import annotations

from itertools import combinations

import numpy as np

from ..seeding import SERVER, stream
from .registry import check
from .session import CheckFailed, Session, fmt_set, real_array
from .stats import binomial_pvalue, bonferroni_threshold, uniform_multinomial_pvalue

SUPPORT_CASES = ((8, 1), (8, 3), (6, 6), (5, 2))
UNBIASED_CASE = (8, 3)
SUBSET_CASES = ((6, 2), (5, 3))


def _session(impl, session):
    return session if session is not None else Session(impl)


def draws(s: Session, rank: int, k: int, n: int, offset: int) -> np.ndarray:
    """(n, rank) diagonals from seeds offset .. offset+n-1 (cached, failures too), each validated:
    a real (rank,) vector of finite numbers, else CheckFailed naming the draw."""
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
    """Every row has exactly k entries equal to r/k and the rest exactly 0 (a random-k draw)."""
    r = D.shape[1]
    nz = D != 0
    return bool(np.all(nz.sum(axis=1) == k) and np.all(np.abs(D[nz] / (r / k) - 1) <= tol))


@check("sampler")
def check_sampler_support_and_value(impl, session=None) -> str:
    """Every draw has exactly k nonzero diagonal entries, each equal to r/k, the rest exactly 0."""
    s = _session(impl, session)
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
    """
    s = _session(impl, session)
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
    return f"rank {r}, k={k}, {n} draws: mean diag(S) in [{means.min():.3f}, {means.max():.3f}] ({test}, smallest p {p[j]:.3g})"


def _normal_two_sided(z: float) -> float:
    from math import erfc, sqrt
    return erfc(z / sqrt(2.0))


@check("sampler")
def check_sampler_uniform_subsets(impl, session=None) -> str:
    """The index set is uniform over all C(r, k) subsets (chi-square, Monte Carlo p-value)."""
    s = _session(impl, session)
    n = s.options.sampler_draws
    threshold = bonferroni_threshold(s.options.alpha, len(SUBSET_CASES))
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
        p = uniform_multinomial_pvalue(counts, stream(s.options.seed, round=c, client=SERVER, purpose="eval"))
        report.append(p)
        if p < threshold:
            worst = max(cells, key=lambda I: abs(cells[I] - n / len(cells)))
            raise CheckFailed(f"rank {r}, k={k}: over {n} draws subset {fmt_set(worst)} appeared {cells[worst]} times, "
                              f"expected {n / len(cells):.1f} (uniform over {len(cells)} subsets); {np.sum(counts == 0)} "
                              f"subsets never appeared; chi-square Monte Carlo p = {p:.3g} < {threshold:.3g}")
    return f"{len(SUBSET_CASES)} cases, {n} draws each: Monte Carlo p-values {[round(p, 4) for p in report]}"
