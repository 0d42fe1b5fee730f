"""How much `fslora verify` runs: the quick profile (--quick, the power matrix) and the full one.

Every setting is full batch (a conformance-protocol implementation gets deterministic gradient
oracles) and single-layer (exact Hessians for L). T is long enough that the reference's LHS falls
>= 10x below its initial value (reported per run; tests/theory hold the quick profile to it).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .experiment import Setting

# N = 2 clients, r = 4, k/r = 1/2, H = 1, least squares with m = 4, n = 3 (64 samples per client)
LS_N2 = Setting("ls-N2", n_clients=2, rank=4, ratios=(0.5,), local_steps=1, rounds=1800, heterogeneity=0.5,
                dims=(4, 3), mean_size=64)
LS_N4_H2 = replace(LS_N2, name="ls-N4-H2", n_clients=4, local_steps=2)
LG_N2 = replace(LS_N2, name="lg-N2", family="logistic", rounds=4400)   # cross-entropy decays slower: longer T


@dataclass(frozen=True)
class Profile:
    name: str
    theorem: tuple                 # Theorem 4.4 settings (the first also hosts above-limit and stationarity)
    seeds: int                     # seeds per Theorem 4.4 run
    stationary_seeds: int          # seeds of alg1.stationary_point (its gamma-runs are the theorem's first seeds)
    corollary: Setting
    corollary_seeds: int
    corollary_factors: tuple       # T = ceil(1.5 T_min) x factors
    ratios: tuple                  # sketching ratios of the descriptive sqrt(L-tilde) exponent (() = skip)
    unbiased_rounds: int           # Monte Carlo rounds per point of alg1.round_unbiased
    above_limit_rounds: int
    moment_samples: int            # Monte Carlo draws of the sampler checks


QUICK = Profile("quick", theorem=(LS_N2,), seeds=3, stationary_seeds=2, corollary=LS_N2, corollary_seeds=2,
                corollary_factors=(1.0, 1.5, 2.25), ratios=(),
                unbiased_rounds=1000, above_limit_rounds=100, moment_samples=4000)
FULL = Profile("full", theorem=(LS_N2, LS_N4_H2, LG_N2), seeds=3, stationary_seeds=3, corollary=LS_N2, corollary_seeds=3,
               corollary_factors=(1.0, 2.0, 4.0), ratios=(1.0, 0.75, 0.5, 0.25), unbiased_rounds=2000, above_limit_rounds=200, moment_samples=20_000)
