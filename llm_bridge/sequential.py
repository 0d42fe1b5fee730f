"""The LLM claim's pre-declared sequential plan and its intersection-union test.

Claim: "FSLoRA reaches a lower held-out loss than *every* baseline". Per seed s and baseline j,
d_sj = log(L_fslora,s / L_j,s); the claim is mu_j < 0 for every j.

Intersection-union test (Berger 1982, Technometrics 24:295-300; Berger & Hsu 1996, Statistical
Science 11:283-319): the null "some mu_j >= 0" is the union of the H0_j, so the claim is
accepted at level a when *every* one-sided paired t test of H0_j: mu_j >= 0 rejects at level a
(its p-value is the largest of the pairwise ones). No Bonferroni: under any null configuration
some mu_j >= 0, and the IUT rejects only if that test rejects, which has probability <= a.

Sequential plan (declared before any seed runs and stored with every record): a pilot of
``pilot`` seeds, then seeds added ``step`` at a time up to ``max_seeds``; a look after each group.
The level of look i is the increment alpha(t_i) - alpha(t_{i-1}) of the Lan-DeMets Pocock-type
spending function alpha(t) = alpha ln(1 + (e - 1) t), t_i = n_i / max_seeds (Lan & DeMets 1983,
Biometrika 70:659-663; Jennison & Turnbull 2000, *Group Sequential Methods*, ch. 7). Each look is
tested at its increment by itself, so the error over all looks is at most the sum of the
increments, alpha (a union bound over looks: valid for any dependence between looks, and
conservative next to the exact joint-normal boundaries, which t tests on a handful of seeds do not
have). Pocock-type rather than O'Brien-Fleming-type spending because with 3-9 seeds the early
looks must keep some level to be of any use.

Stopping rule at look i (n_i seeds, level a_i):
  * ``supported``: the IUT rejects at a_i (every p_j <= a_i);
  * ``not supported``: some baseline is significantly *better* than FSLoRA: a reverse one-sided
    test (H0: mu_j <= 0) rejects at a_i / K (Bonferroni over the K baselines: "any" is a union);
  * otherwise ``inconclusive``: continue with the next group, or stop at ``max_seeds``
    (the plan is exhausted and the claim stays inconclusive).
Until a look is reached (fewer than ``pilot`` seeds, or between looks) the status is
``inconclusive``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from math import e, log, sqrt

import numpy as np
from scipy import stats

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
SPENDING = "Lan-DeMets Pocock-type: alpha(t) = alpha ln(1 + (e - 1) t)"


@dataclass(frozen=True)
class SequentialPlan:
    """Pilot, group size and maximum of the seeds, and the overall one-sided level.

    Parameters
    ----------
    pilot : int, default 3
        Seeds at the first look (at least 2: a paired t test needs them).
    step : int, default 2
        Seeds added before each later look.
    max_seeds : int, default 9
        The last look; the plan stops there whatever the data.
    alpha : float, default 0.05
        The overall one-sided level, spent over the looks.
    """

    pilot: int = 3
    step: int = 2
    max_seeds: int = 9
    alpha: float = 0.05

    def validate(self) -> "SequentialPlan":
        """One-line errors naming the option; returns the plan.

        Returns
        -------
        SequentialPlan
        """
        if not (isinstance(self.pilot, int) and 2 <= self.pilot <= 1000):
            raise ValueError(f"--pilot-seeds must be an integer in [2, 1000], got {self.pilot!r}")
        if not (isinstance(self.step, int) and 1 <= self.step <= 1000):
            raise ValueError(f"--seed-step must be an integer in [1, 1000], got {self.step!r}")
        if not (isinstance(self.max_seeds, int) and self.pilot <= self.max_seeds <= 1000):
            raise ValueError(f"--max-seeds must be an integer in [--pilot-seeds = {self.pilot}, 1000], "
                             f"got {self.max_seeds!r}")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"--false-alarm-rate must be in (0, 0.5), got {self.alpha}")
        return self

    def looks(self) -> list:
        """The seed counts at which the data are looked at.

        Returns
        -------
        list of int
            ``[pilot, pilot + step, ...]``, ending at ``max_seeds``.
        """
        out = list(range(self.pilot, self.max_seeds, self.step))
        return out + [self.max_seeds]

    def levels(self) -> list:
        """The level spent at each look (the spending function's increments; they sum to alpha).

        Returns
        -------
        list of float
            One per look.
        """
        spent = [spending(n / self.max_seeds, self.alpha) for n in self.looks()]
        return [b - a for a, b in zip([0.0] + spent[:-1], spent)]

    def to_json(self) -> dict:
        """The plan as stored in every record and the report.

        Returns
        -------
        dict
        """
        return dict(asdict(self), looks=self.looks(), levels=self.levels(), spending=SPENDING)


def spending(t: float, alpha: float) -> float:
    """Level spent by information fraction ``t`` (Lan-DeMets Pocock-type).

    Parameters
    ----------
    t : float
        In [0, 1].
    alpha : float

    Returns
    -------
    float
        ``alpha ln(1 + (e - 1) t)``: 0 at t = 0, alpha at t = 1.
    """
    return alpha * log(1.0 + (e - 1.0) * min(max(t, 0.0), 1.0))


def one_sided_p(d, direction: str = "less") -> float:
    """p-value of the paired one-sided t test of H0: mean(d) >= 0 (``less``) or <= 0 (``greater``).

    Parameters
    ----------
    d : array_like, (n,)
        Per-seed differences, n >= 2.
    direction : {"less", "greater"}
        The alternative.

    Returns
    -------
    float
        With zero spread: 0 if every d lies strictly on the alternative's side, else 1.
    """
    d = np.asarray(d, dtype=float)
    if d.size < 2:
        raise ValueError(f"a paired t test needs at least 2 seeds, got {d.size}")
    sign = -1.0 if direction == "less" else 1.0
    sd = float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if sign * float(d.mean()) > 0 else 1.0
    tstat = float(d.mean()) / (sd / sqrt(d.size))
    return float(stats.t.cdf(tstat, d.size - 1) if direction == "less" else stats.t.sf(tstat, d.size - 1))


def intersection_union_test(differences: dict, level: float) -> dict:
    """Is every baseline's mean difference below 0? Each one-sided paired t test at ``level``.

    Parameters
    ----------
    differences : dict
        ``{baseline: d}``, d: (n,) per-seed log(L_fslora / L_baseline), the same seeds in each.
    level : float
        The level every pairwise test is run at (no multiplicity adjustment: intersection-union).

    Returns
    -------
    dict
        ``p_values`` per baseline, ``p_iut`` (their maximum), ``rejects`` (p_iut <= level) and
        ``level``.
    """
    if not differences:
        raise ValueError("the intersection-union test needs at least one baseline")
    p = {name: one_sided_p(d, "less") for name, d in differences.items()}
    p_iut = max(p.values())
    return {"p_values": p, "p_iut": p_iut, "level": level, "rejects": bool(p_iut <= level)}


def look_status(plan: SequentialPlan, differences: dict) -> dict:
    """The plan's status with the seeds at hand (the first n seeds, n = len of each d).

    Parameters
    ----------
    plan : SequentialPlan
    differences : dict
        ``{baseline: d}``, d: (n,) per-seed log(L_fslora / L_baseline), seeds 0..n-1 of the plan.

    Returns
    -------
    dict
        ``status``, ``stopped`` (the plan needs no more seeds), ``n_seeds``, ``look`` (1-based
        index of the last look reached, 0 if none), ``level``, the look's IUT and reverse tests,
        ``next_seeds`` (the seed count of the next look, None when stopped) and ``reason``.
    """
    sizes = {len(d) for d in differences.values()}
    if len(sizes) != 1:
        raise ValueError(f"every baseline needs the same seeds, got counts {sorted(sizes)}")
    n = sizes.pop()
    looks = plan.looks()
    reached = [i for i, m in enumerate(looks) if m <= n]
    if not reached:
        return {"n_seeds": n, "looks": looks, "levels": plan.levels(), "look": 0, "level": None, "iut": None,
                "reverse": None, "status": INCONCLUSIVE, "stopped": False, "next_seeds": looks[0],
                "reason": f"{n} seeds: the first look is at {looks[0]}"}
    # looks in order: the first that stops decides; seeds past it (or past the last look reached)
    # are not looked at
    for i in reached:
        out = _look(plan, {k: np.asarray(d, dtype=float)[:looks[i]] for k, d in differences.items()}, i)
        if out["stopped"]:
            break
    return dict(out, n_seeds=n)


def _look(plan: SequentialPlan, at_look: dict, i: int) -> dict:
    """Look ``i`` (0-based) on its seeds ``at_look`` ({baseline: d}, d: (looks[i],))."""
    looks, levels = plan.looks(), plan.levels()
    m, level = looks[i], levels[i]
    iut = intersection_union_test(at_look, level)
    reverse = {name: one_sided_p(d, "greater") for name, d in at_look.items()}
    reverse_level = level / len(at_look)
    out = {"looks": looks, "levels": levels, "look": i + 1, "level": level, "iut": iut,
           "reverse": {"p_values": reverse, "level": reverse_level}}
    last = i + 1 == len(looks)
    if iut["rejects"]:
        return dict(out, status=SUPPORTED, stopped=True, next_seeds=None,
                    reason=f"look {i + 1} ({m} seeds): every one-sided test rejects at {level:.4g} "
                           f"(largest p {iut['p_iut']:.3g})")
    worse = sorted(k for k, p in reverse.items() if p <= reverse_level)
    if worse:
        return dict(out, status=NOT_SUPPORTED, stopped=True, next_seeds=None,
                    reason=f"look {i + 1} ({m} seeds): {', '.join(worse)} significantly better than fslora "
                           f"(reverse test at {reverse_level:.4g})")
    if last:
        return dict(out, status=INCONCLUSIVE, stopped=True, next_seeds=None,
                    reason=f"plan exhausted at {m} seeds: largest p {iut['p_iut']:.3g} > {level:.4g}")
    return dict(out, status=INCONCLUSIVE, stopped=False, next_seeds=looks[i + 1],
                reason=f"look {i + 1} ({m} seeds): largest p {iut['p_iut']:.3g} > {level:.4g}; "
                       f"continue to {looks[i + 1]} seeds")
