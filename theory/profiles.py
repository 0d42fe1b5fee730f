"""How much `fslora verify` runs: the quick profile (--quick, the power matrix) and the full one.

Every setting is single-layer (exact Hessians for L) and, but one, full batch (a conformance-protocol
implementation gets deterministic gradient oracles; it is not run on the minibatch setting). T is
long enough that the reference's LHS falls >= 10x below its initial value (reported per run; tests/theory
hold the quick profile to it).

Theorem 4.4 is informative (its RHS below ||grad f^S(X^0)||^2, so that a run that never moves fails it)
only with many near-homogeneous clients and a mild sketch: at N = 2, k/r = 1/2 its RHS is ~12x
||grad f^S(X^0)||^2. LS_N16 (N = 16, k/r = 3/4, heterogeneity 0.05, T = 3500) brings it to ~0.31 (full);
QUICK_LS_N10 (N = 10, T = 1800) to ~0.47 (quick). LS_N8_UNEQUAL (k_i/r alternating 3/4 and 1: weighting or scaling by k_i
is no longer equivalent to a step size) and LS_N8_BATCH (minibatches of 16: sigma_g^2 > 0) cover what
equal budgets and full batches cannot see.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from .experiment import Setting

# N = 2 clients, r = 4, k/r = 1/2, H = 1, least squares with m = 4, n = 3 (64 samples per client)
LS_N2 = Setting("ls-N2", n_clients=2, rank=4, ratios=(0.5,), local_steps=1, rounds=1800, heterogeneity=0.5,
                dims=(4, 3), mean_size=64)
LS_N4_H2 = replace(LS_N2, name="ls-N4-H2", n_clients=4, local_steps=2)
LG_N2 = replace(LS_N2, name="lg-N2", family="logistic", rounds=4400)   # cross-entropy decays slower: longer T
LS_N16 = replace(LS_N2, name="ls-N16", n_clients=16, ratios=(0.75,), heterogeneity=0.05, rounds=3500)
QUICK_LS_N10 = replace(LS_N16, name="ls-N10", n_clients=10, rounds=1800)   # half the client-rounds of LS_N16
LS_N8_UNEQUAL = replace(LS_N2, name="ls-N8-unequal", n_clients=8, ratios=(0.75, 1.0), heterogeneity=0.05, rounds=2000)
GENERAL_H = replace(LS_N4_H2, name="ls-N4-H2-short", rounds=400)   # the a-priori general-H bound's sweep
LS_N8_BATCH = replace(LS_N2, name="ls-N8-batch", n_clients=8, ratios=(0.75,), heterogeneity=0.05, batch_size=16,
                      rounds=2000)


@dataclass(frozen=True)
class Profile:
    """How much ``fslora verify`` runs: the settings, seeds, rounds and samples of every claim.

    Parameters
    ----------
    name : str
        "quick" or "full".
    theorem : tuple of theory.experiment.Setting
        The Theorem 4.4 settings.
    host : theory.experiment.Setting
        The setting of the above-limit and stationarity checks (cheap: N = 2).
    seeds : int
        Seeds per Theorem 4.4 run.
    stationary_seeds : int
        Seeds of ``alg1.stationary_point`` (its gamma runs are the theorem's first seeds).
    corollary : theory.experiment.Setting
        The setting of Corollary 4.5.
    corollary_seeds : int
        Seeds per T of the corollary.
    corollary_factors : tuple of float
        T = ceil(1.5 T_min) x each factor.
    ratios : tuple of float
        Sketching ratios of the descriptive sqrt(L-tilde) exponent (empty: skipped).
    unbiased_rounds : int
        Rounds per point of ``alg1.round_unbiased``.
    above_limit_rounds : int
        Rounds of the above-limit runs.
    moment_samples : int
        Monte Carlo draws of the sampler checks.
    general_h : tuple of float, optional
        Heterogeneities of the a-priori general-H bound (``ours.general_h.a_priori``).
    """
    name: str
    theorem: tuple                 # Theorem 4.4 settings
    host: Setting                  # the setting of above-limit and stationarity (cheap: N = 2)
    seeds: int                     # seeds per Theorem 4.4 run
    stationary_seeds: int          # seeds of alg1.stationary_point (its gamma-runs are the theorem's first seeds)
    corollary: Setting
    corollary_seeds: int
    corollary_factors: tuple       # T = ceil(1.5 T_min) x factors
    ratios: tuple                  # sketching ratios of the descriptive sqrt(L-tilde) exponent (() = skip)
    unbiased_rounds: int           # Monte Carlo rounds per point of alg1.round_unbiased
    above_limit_rounds: int
    moment_samples: int            # Monte Carlo draws of the sampler checks
    general_h: tuple = (0.5,)      # heterogeneities of the a-priori general-H bound (ours.general_h.a_priori)


QUICK = Profile("quick", theorem=(QUICK_LS_N10,), host=LS_N2, seeds=3, stationary_seeds=2, corollary=LS_N2, corollary_seeds=5,
                corollary_factors=(1.0, 1.5, 2.25), ratios=(),
                unbiased_rounds=1000, above_limit_rounds=100, moment_samples=4000)
FULL = Profile("full", theorem=(LS_N2, LS_N4_H2, LG_N2, LS_N16, LS_N8_UNEQUAL, LS_N8_BATCH), host=LS_N2, seeds=3, stationary_seeds=3, corollary=LS_N2, corollary_seeds=5,
               corollary_factors=(1.0, 2.0, 4.0), ratios=(1.0, 0.75, 0.5, 0.25), unbiased_rounds=2000, above_limit_rounds=200, moment_samples=20_000,
               general_h=(0.0, 0.5, 1.0))
