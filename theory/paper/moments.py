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
    """The worst error of every sketch identity over every 1 <= k <= r <= r_max, by exact enumeration.

    Parameters
    ----------
    law : callable, optional
        The sketch law under test, ``law(r, k) -> (diagonals, probabilities)``.
    r_max : int, optional
        The largest rank.
    seed : int, optional
        The seed of the test matrices M, B, A.

    Returns
    -------
    dict
        ``{identity: (worst error, (r, k))}``.
    """
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
    """Check one claim of ``IDENTITIES`` exactly over all (r, k) up to r_max.

    The ``||M S||^2`` maximum is an inequality: its entry is the excess over ``(r/k)^2 ||M||^2``
    (clipped at 0).

    Parameters
    ----------
    claim_id : str
        A key of ``IDENTITIES``.
    law : callable, optional
        The sketch law under test.
    r_max : int, optional
        The largest rank.

    Returns
    -------
    theory.result.Result
    """
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
    """Check the moments of ``sampler`` by Monte Carlo for r too large to enumerate (Hoeffding, 99.9 % per k).

    Parameters
    ----------
    sampler : callable, optional
        ``sampler(r, k, rng) -> Sketch``, the sampler under test.
    r : int, optional
        The rank.
    ks : sequence of int, optional
        The sketch sizes checked.
    n_samples : int, optional
        The draws per k.
    seed : int, optional
        The base seed (seed + k per k).

    Returns
    -------
    theory.result.Result
    """
    runs = {k: monte_carlo_check(r, k, n_samples, seed + k, sampler=sampler) for k in ks}
    ok = all(v["ok"] for v in runs.values())
    ratio = max(max(e / b for e, b in zip(v["errors"].values(), v["bounds"].values())) for v in runs.values())
    return Result(VERIFIED if ok else VIOLATED, f"max err/bound {ratio:.2f}",
                  {"r": r, "n_samples": n_samples, "confidence_per_k": 0.999,
                   "per_k": {str(k): {"errors": v["errors"], "bounds": v["bounds"]} for k, v in runs.items()},
                   "max_error_over_bound": ratio})


def check_uniform_subsets(sampler=sample_sketch, r: int = 6, k: int = 3, n_samples: int = 20_000,
                          seed: int = 0, alpha: float = 1e-3) -> Result:
    """Pearson chi-square test that ``sampler`` draws each of the C(r, k) index sets equally often.

    Parameters
    ----------
    sampler : callable, optional
        ``sampler(r, k, rng) -> Sketch``, the sampler under test.
    r : int, optional
        The rank.
    k : int, optional
        The sketch size.
    n_samples : int, optional
        The number of draws.
    seed : int, optional
        The seed (fixed, so the test is reproducible).
    alpha : float, optional
        The rejection level.

    Returns
    -------
    theory.result.Result
        VIOLATED if a draw has the wrong size or the test rejects.
    """
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
