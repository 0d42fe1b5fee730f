"""Checkers for Definition 3.1 and the sketch identities of docs/spec.md §2.

Exact: every (r, k) with 1 <= k <= r <= R_MAX, all C(r, k) index sets enumerated, on fixed
test matrices M, B, A. Statistical: r = 64 with Hoeffding bounds, and a chi-square test that
the core sampler draws every k-subset equally often.
"""
from __future__ import annotations

import itertools
from math import comb

import numpy as np
from scipy import stats

from fslora_ref.seeding import SERVER, stream
from fslora_ref.sketch import sample_sketch

from ..exact.moments import exact_errors, monte_carlo_check, reference_law
from ..result import VERIFIED, VIOLATED, Result, exact

R_MAX = 7

# identity name in moments.exact_errors -> the claims that report it
IDENTITIES = {
    "def3.1.unbiased": ("E[s_j]=1", "E[BSA]=BA"),
    "def3.1.second_moment": ("E[s_j^2]=r/k",),
    "identity.cross_moment": ("E[s_j s_l]=r(k-1)/(k(r-1))",),
    "identity.covariance": ("Cov(s)=c_k(rI-11^T)",),
    "identity.frobenius_expectation": ("E||MS||^2=(r/k)||M||^2",),
    "identity.frobenius_max": ("max||MS||^2-(r/k)^2||M||^2",),
    "identity.product_variance": ("E||BSA-BA||^2 identity",),
}


def all_errors(law=reference_law, r_max: int = R_MAX, seed: int = 0) -> dict:
    """{identity: (worst error, (r, k))} over every 1 <= k <= r <= r_max (exact enumeration)."""
    rng = stream(seed, round=-1, client=SERVER, purpose="eval")
    worst = {}
    for r in range(1, r_max + 1):
        M, B, A = rng.standard_normal((3, r)), rng.standard_normal((4, r)), rng.standard_normal((r, 5))
        for k in range(1, r + 1):
            for name, err in exact_errors(r, k, M, B, A, law).items():
                if name not in worst or err > worst[name][0]:
                    worst[name] = (err, (r, k))
    return worst


def check_identity(claim_id: str, law=reference_law, r_max: int = R_MAX) -> Result:
    """One claim of IDENTITIES, exact over all (r, k) up to r_max. The ||MS||^2 maximum is an
    inequality: its entry is the excess over (r/k)^2 ||M||^2 (must be <= 0)."""
    errs = all_errors(law, r_max)
    names = IDENTITIES[claim_id]
    scale = 1e3   # the test matrices' squared norms are at most O(10^3) for r <= 7
    errors = {n: max(errs[n][0], 0.0) for n in names}
    res = exact(errors, scale)
    res.evidence["worst_case_r_k"] = {n: list(errs[n][1]) for n in names}
    res.evidence["cases"] = f"all 1<=k<=r<={r_max}, every C(r,k) index set"
    return res


def check_large_r(sampler=sample_sketch, r: int = 64, ks=(1, 8, 32, 63), n_samples: int = 20_000,
                  seed: int = 0) -> Result:
    """Monte Carlo moments of ``sampler`` for r too large to enumerate (Hoeffding, 99.9% per k)."""
    runs = {k: monte_carlo_check(r, k, n_samples, seed + k, sampler=sampler) for k in ks}
    ok = all(v["ok"] for v in runs.values())
    ratio = max(max(e / b for e, b in zip(v["errors"].values(), v["bounds"].values())) for v in runs.values())
    return Result(VERIFIED if ok else VIOLATED, f"max err/bound {ratio:.2f}",
                  {"r": r, "n_samples": n_samples, "confidence_per_k": 0.999,
                   "per_k": {str(k): {"errors": v["errors"], "bounds": v["bounds"]} for k, v in runs.items()},
                   "max_error_over_bound": ratio})


def check_uniform_subsets(sampler=sample_sketch, r: int = 6, k: int = 3, n_samples: int = 20_000,
                          seed: int = 0, alpha: float = 1e-3) -> Result:
    """Pearson chi-square test that ``sampler`` draws each of the C(r, k) index sets with equal
    probability (rejects at level alpha; fixed seed)."""
    rng = stream(seed, round=-1, client=SERVER, purpose="eval")
    index = {I: j for j, I in enumerate(itertools.combinations(range(r), k))}
    counts = np.zeros(comb(r, k))
    for _ in range(n_samples):
        S = sampler(r, k, rng)
        key = tuple(int(i) for i in np.flatnonzero(S.diagonal()))
        if key not in index:
            return Result(VIOLATED, f"drew {len(key)} indices", {"bad_draw": list(key), "k": k})
        counts[index[key]] += 1
    chi2, p = stats.chisquare(counts)
    return Result(VERIFIED if p > alpha else VIOLATED, f"chi2 p={p:.3g}",
                  {"r": r, "k": k, "n_samples": n_samples, "chi2": float(chi2), "p_value": float(p),
                   "alpha": alpha, "min_count": int(counts.min()), "max_count": int(counts.max())})
