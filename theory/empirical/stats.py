"""Paired comparisons across seeds and the claim status they add up to.

Every comparison pairs a *treatment* with a *reference* run on the same seed (same data,
initialisation, minibatch and sketch streams). Per seed s it forms

    d_s = log(L_treatment,s / L_reference,s)     (a loss: positive, lower is better)
    d_s = a_treatment,s - a_reference,s          (an accuracy: higher is better)

and a paired t interval for the mean of d over the n seeds. A claim made of K comparisons
("for every r tried", "against all three baselines") is decided by *simultaneous* intervals:
each is a two-sided (1 - 2 alpha / K) interval, i.e. every one-sided test at level alpha / K
(Bonferroni over the claim's K comparisons, alpha = 0.05 one-sided per direction). With K = 1
this is the usual 90% interval of a one-sided 5% test and of TOST equivalence.

Hypotheses (what the claim says about the mean of d):
    superior      d < 0 (loss) / d > 0 (accuracy)
    noninferior   d < log(1 + margin): the treatment's loss is at most margin (relative) worse
    equivalent    |d| < log(1 + margin): the two differ by less than the margin either way
A comparison's verdict is ``for`` when its interval lies inside the claimed region,
``against`` when it lies entirely outside it (the opposite holds significantly), else
``undecided``. The claim is ``supported`` when every comparison is ``for``, ``not supported``
when any is ``against``, otherwise ``inconclusive``.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import exp, log, sqrt

import numpy as np
from scipy import stats

ALPHA = 0.05
SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
STATUSES = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)
FOR, AGAINST, UNDECIDED = "for", "against", "undecided"
HYPOTHESES = ("superior", "noninferior", "equivalent")


@dataclass(frozen=True)
class Metric:
    """A per-run number compared between arms.

    Parameters
    ----------
    name : str
        Its key in a run's record.
    description : str
        What it is, for the report.
    better : {"lower", "higher"}, optional
        "lower": a loss (positive; compared as a log ratio); "higher": an accuracy in [0, 1]
        (compared as a difference).
    """

    name: str
    description: str
    better: str = "lower"

    @property
    def log_scale(self) -> bool:
        return self.better == "lower"


@dataclass(frozen=True)
class Hypothesis:
    """What a claim says about the mean of d (see the module docstring).

    Parameters
    ----------
    kind : {"superior", "noninferior", "equivalent"}
        The hypothesis.
    margin : float, optional
        The relative margin (0.10 = 10 % of the reference loss), in (0, 1), for noninferior and
        equivalent.

    Raises
    ------
    ValueError
        If ``kind`` is unknown or the margin is out of range for it.
    """
    kind: str                 # one of HYPOTHESES
    margin: float = 0.0       # relative margin (0.10 = 10% of the reference loss) for noninferior / equivalent

    def __post_init__(self):
        if self.kind not in HYPOTHESES:
            raise ValueError(f"hypothesis must be one of {HYPOTHESES}, got {self.kind!r}")
        if self.kind != "superior" and not (0.0 < self.margin < 1.0):
            raise ValueError(f"margin must be in (0, 1) for a {self.kind} hypothesis, got {self.margin}")

    def describe(self, metric: Metric) -> str:
        """The hypothesis in words, for the report.

        Parameters
        ----------
        metric : Metric
            The metric it is about.

        Returns
        -------
        str
        """
        if self.kind == "superior":
            return f"treatment {'lower' if metric.log_scale else 'higher'} than reference"
        band = f"{self.margin:.0%} of the reference" if metric.log_scale else f"{self.margin:.2f}"
        if self.kind == "noninferior":
            return f"treatment worse than reference by less than {band}"
        return f"treatment within +-{band} of reference"


def confidence_level(n_comparisons: int, alpha: float = ALPHA) -> float:
    """The two-sided level of each of K simultaneous intervals: 1 - 2 alpha / K.

    Parameters
    ----------
    n_comparisons : int
        K (at least 1 is used).
    alpha : float, optional
        The one-sided level per direction of the whole claim.

    Returns
    -------
    float

    Examples
    --------
    >>> from theory.empirical.stats import confidence_level
    >>> round(confidence_level(1), 6), round(confidence_level(4), 6)
    (0.9, 0.975)
    """
    return 1.0 - 2.0 * alpha / max(int(n_comparisons), 1)


def compare(treatment, reference, metric: Metric, hypothesis: Hypothesis, *, n_comparisons: int = 1,
            alpha: float = ALPHA) -> dict:
    """A paired comparison of per-seed values (the same seed order in both).

    Parameters
    ----------
    treatment : sequence of float or None, length n
        The treatment's value per seed (None: the run diverged).
    reference : sequence of float or None, length n
        The reference's value per seed.
    metric : Metric
        The metric compared.
    hypothesis : Hypothesis
        What the claim says about the mean of d.
    n_comparisons : int, optional
        K, the claim's number of comparisons (Bonferroni).
    alpha : float, optional
        The one-sided level per direction of the whole claim.

    Returns
    -------
    dict
        The evidence: the mean of d and its interval, the effect as a relative (loss) or absolute
        (accuracy) difference, Cohen's d_z = mean / sd of d, the Bonferroni-adjusted one-sided p-value
        of the claimed direction, the seeds where the treatment was better, and ``verdict`` (for /
        against / undecided; undecided with a ``reason`` when a seed diverged or n < 2).

    Raises
    ------
    ValueError
        If the two have different lengths, or a loss is not positive.

    Examples
    --------
    >>> from theory.empirical.stats import Hypothesis, Metric, compare
    >>> loss = Metric("heldout", "held-out loss")
    >>> out = compare([0.5, 0.6, 0.55], [1.0, 1.1, 1.0], loss, Hypothesis("superior"))
    >>> out["verdict"], out["treatment_better_seeds"]
    ('for', 3)
    """
    t = [None if v is None else float(v) for v in treatment]
    r = [None if v is None else float(v) for v in reference]
    if len(t) != len(r):
        raise ValueError(f"treatment and reference must have one value per seed, got {len(t)} and {len(r)}")
    level = confidence_level(n_comparisons, alpha)
    out = {"n_seeds": len(t), "confidence": level, "n_comparisons": int(n_comparisons), "alpha": alpha,
           "hypothesis": hypothesis.kind, "margin": hypothesis.margin, "metric": metric.name, "better": metric.better,
           "treatment_values": t, "reference_values": r}
    diverged = [i for i, (a, b) in enumerate(zip(t, r)) if a is None or b is None or not (np.isfinite(a) and np.isfinite(b))]
    if diverged:
        return dict(out, verdict=UNDECIDED, reason=f"{len(diverged)} of {len(t)} seeds have a diverged run "
                    f"(seed positions {diverged}); no interval", diverged_positions=diverged)
    if len(t) < 2:
        return dict(out, verdict=UNDECIDED, reason="a paired t interval needs at least 2 seeds")
    tv, rv = np.array(t), np.array(r)
    if metric.log_scale:
        if np.any(tv <= 0) or np.any(rv <= 0):
            raise ValueError(f"metric {metric.name} must be positive to compare log ratios")
        d = np.log(tv) - np.log(rv)
    else:
        d = tv - rv
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2.0, n - 1)) * sd / sqrt(n)
    lo, hi = mean - half, mean + half
    better = (d < 0) if metric.log_scale else (d > 0)
    out.update(treatment_mean=float(tv.mean()), reference_mean=float(rv.mean()), mean_d=mean, sd_d=sd,
               ci_d=[lo, hi], cohens_dz=(mean / sd if sd > 0 else (0.0 if mean == 0 else None)),
               treatment_better_seeds=int(better.sum()))
    if metric.log_scale:
        out.update(effect=exp(mean) - 1.0, effect_ci=[exp(lo) - 1.0, exp(hi) - 1.0],
                   effect_kind="relative difference exp(mean log ratio) - 1 (geometric mean ratio - 1)")
    else:
        out.update(effect=mean, effect_ci=[lo, hi], effect_kind="mean difference")
    verdict, p = _decide(lo, hi, mean, sd, n, metric, hypothesis)
    out.update(verdict=verdict, p_value_adjusted=min(1.0, p * n_comparisons) if p is not None else None)
    return out


def claimed_region(metric: Metric, hypothesis: Hypothesis):
    """The claimed region for the mean of d, as an interval.

    Parameters
    ----------
    metric : Metric
        The metric compared.
    hypothesis : Hypothesis
        What the claim says about the mean of d.

    Returns
    -------
    tuple of float
        (low, high), possibly infinite on one side.
    """
    if hypothesis.kind == "superior":
        return (-np.inf, 0.0) if metric.log_scale else (0.0, np.inf)
    m = log(1.0 + hypothesis.margin) if metric.log_scale else hypothesis.margin
    if hypothesis.kind == "noninferior":
        return (-np.inf, m) if metric.log_scale else (-m, np.inf)
    return (-m, m)


def _decide(lo, hi, mean, sd, n, metric, hypothesis):
    """(verdict, unadjusted one-sided p-value of the claimed region; TOST: the larger of two)."""
    low, high = claimed_region(metric, hypothesis)
    if low < lo and hi < high:
        verdict = FOR
    elif lo > high or hi < low:
        verdict = AGAINST
    else:
        verdict = UNDECIDED
    ps = []
    se = sd / sqrt(n)
    for bound, side in ((low, "above"), (high, "below")):
        if not np.isfinite(bound):
            continue
        if se == 0:
            ps.append(0.0 if (mean > bound if side == "above" else mean < bound) else 1.0)
            continue
        tstat = (mean - bound) / se
        ps.append(float(stats.t.sf(tstat, n - 1) if side == "above" else stats.t.cdf(tstat, n - 1)))
    return verdict, max(ps)


def claim_status(verdicts) -> str:
    """A claim's status from its comparisons' verdicts.

    Parameters
    ----------
    verdicts : iterable of str
        "for", "against" or "undecided", one per comparison.

    Returns
    -------
    str
        "supported" if every verdict is "for", "not supported" if any is "against", else
        "inconclusive" (also for no comparison).

    Examples
    --------
    >>> from theory.empirical.stats import claim_status
    >>> claim_status(["for", "for"]), claim_status(["for", "against"]), claim_status(["for", "undecided"])
    ('supported', 'not supported', 'inconclusive')
    """
    verdicts = list(verdicts)
    if verdicts and all(v == FOR for v in verdicts):
        return SUPPORTED
    if any(v == AGAINST for v in verdicts):
        return NOT_SUPPORTED
    return INCONCLUSIVE


def mean_band(values, level: float = 0.95):
    """The pointwise mean and two-sided t interval over seeds.

    A row may hold NaN after a divergence; each point uses the seeds still finite there.

    Parameters
    ----------
    values : array_like, shape (n_seeds, n_points)
        Per seed, a curve.
    level : float, optional
        The two-sided level.

    Returns
    -------
    mean : ndarray, shape (n_points,)
    lo : ndarray, shape (n_points,)
    hi : ndarray, shape (n_points,)
        NaN where no seed is finite; lo = hi = mean where only one is.
    """
    v = np.asarray(values, dtype=float)
    mean, lo, hi = (np.full(v.shape[1], np.nan) for _ in range(3))
    for j in range(v.shape[1]):
        col = v[:, j][np.isfinite(v[:, j])]
        if col.size == 0:
            continue
        mean[j] = col.mean()
        if col.size > 1:
            half = stats.t.ppf(0.5 + level / 2, col.size - 1) * col.std(ddof=1) / sqrt(col.size)
            lo[j], hi[j] = mean[j] - half, mean[j] + half
        else:
            lo[j] = hi[j] = mean[j]
    return mean, lo, hi
