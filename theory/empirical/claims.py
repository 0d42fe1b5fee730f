"""The paper's five empirical claims (spec section 6) as arms, comparisons and a hypothesis.

Each claim names the arms it runs, the (treatment, reference) pairs it compares, the
equal-cost axis of the comparison and what it asserts about each pair:

    claim1  FSLoRA vs HetLoRA, FlexLoRA, FLoRA at the paper's budgets    superior   equal rounds
    claim2  FSLoRA(r, k) vs FedIT at rank k, r in {8, 16, 32}, k = 4     superior   equal uploaded floats
    claim3  FSLoRA with k = 8, r = 8 -> 16 -> 32 (each step)             superior   equal rounds
    claim4  FSLoRA at k/r in {3/4, 1/2, 1/4, 1/8} vs k = r               noninferior (margin) equal rounds
    claim5  budgets uniform / normal / heavy-tailed-low at equal mean    equivalent (margin)  equal rounds

Designs that test the wording, not the generator: every r is within the weights' rank (each
family's smallest weight dimension is 32, settings.py); the problems' target rank (12) is no
arm's global rank; claim 5's three distributions have the same expected budget (r/4), so the
shape is the only difference; and every comparison is decided only if both arms have trained
to a plateau by round T (:func:`horizon`).

:func:`evaluate` turns per-seed runs into the report entry of one (claim, family).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .runs import Arm
from .stats import AGAINST, ALPHA, FOR, UNDECIDED, Hypothesis, Metric, claim_status, claimed_region, compare

PAPER_RATIOS = (0.125, 0.25, 0.5, 0.75)
GLOBAL_RANK = 16          # r of claims 1, 4 and 5
DEFAULT_MARGIN = 0.10     # "only slightly": within 10% of the reference's loss (see README)

METRICS = {
    "heldout": Metric("heldout", "held-out loss: mean over clients of the loss on fresh samples of their own "
                      "distribution D_i (problem.held_out)"),
    "train": Metric("train", "training loss f(X) = (1/N) sum_i f_i on the clients' training data"),
}
PRIMARY = "heldout"

# The horizon check (every claim, both arms of every comparison): an arm has trained when its mean
# log loss fell by more than log(1 + TRAINED_MIN_FALL) since round 0, and has reached a plateau when
# the last PLATEAU_TAIL of the rounds gave at most PLATEAU_SHARE of that fall. Otherwise the
# comparison measures speed at round T, not the model training reaches, and stays undecided.
TRAINED_MIN_FALL = 0.25
PLATEAU_TAIL = 0.2
PLATEAU_SHARE = 0.1


@dataclass(frozen=True)
class EmpiricalClaim:
    """One of the paper's empirical claims: its arms, the pairs it compares, the axis and the hypothesis.

    Parameters
    ----------
    id : str
        "claim1" .. "claim5".
    title : str
        A short title.
    statement : str
        What the paper claims.
    axis : {"rounds", "upload"}
        The equal-cost axis of the comparisons.
    hypothesis : theory.empirical.stats.Hypothesis
        What it asserts about each pair.
    arms : tuple of theory.empirical.runs.Arm
        The arms, in display order.
    comparisons : tuple of tuple of str
        ``((treatment label, reference label), ...)``.
    context : tuple of str, optional
        Labels of arms shown in the figure but not compared.
    """
    id: str
    title: str
    statement: str
    axis: str                 # "rounds" or "upload"
    hypothesis: Hypothesis
    arms: tuple               # Arm, in display order
    comparisons: tuple        # ((treatment label, reference label), ...)
    context: tuple = ()       # labels of arms shown in the figure but not compared

    def arm(self, label: str) -> Arm:
        """The arm labelled ``label``.

        Parameters
        ----------
        label : str
            The arm's label.

        Returns
        -------
        theory.empirical.runs.Arm

        Raises
        ------
        StopIteration
            If the claim has no such arm.
        """
        return next(a for a in self.arms if a.label == label)

    @property
    def axis_text(self) -> str:
        if self.axis == "upload":
            return ("equal cumulative uploaded floats (sum over rounds and clients): each pair is compared at the "
                    "largest upload both reached, each at its last evaluation within it")
        return "equal rounds: the model after the same T rounds of H local steps, all N clients every round"


def _fs(label, rank, budget):
    return Arm(label, "fslora", rank, budget)


def build_claims(margin: float = DEFAULT_MARGIN) -> list:
    """The paper's five claims (see the module docstring).

    Parameters
    ----------
    margin : float, optional
        The relative margin of claims 4 and 5.

    Returns
    -------
    list of EmpiricalClaim
    """
    r = GLOBAL_RANK
    paper = ("ratios", PAPER_RATIOS)
    claim1 = EmpiricalClaim(
        "claim1", "main comparison",
        "With heterogeneous budgets (k_i/r cycled over {1/8, 1/4, 1/2, 3/4}), FSLoRA reaches a better model than "
        "HetLoRA, FlexLoRA and FLoRA at the same budgets and rounds.",
        "rounds", Hypothesis("superior"),
        (_fs("fslora", r, paper), Arm("hetlora", "hetlora", r, paper), Arm("flexlora", "flexlora", r, paper),
         Arm("flora", "flora", r, paper), Arm("fedit (full rank)", "fedit", r, paper)),
        (("fslora", "hetlora"), ("fslora", "flexlora"), ("fslora", "flora")),
        context=("fedit (full rank)",))
    k2 = 4
    claim2 = EmpiricalClaim(
        "claim2", "sketching vs no sketching at equal upload",
        f"For every global rank r tried (8, 16, 32), FSLoRA with rank r and budget k = {k2} beats plain federated "
        f"LoRA (FedIT) trained at rank k = {k2}, at the same total upload.",
        "upload", Hypothesis("superior"),
        tuple(_fs(f"fslora r={rr} k={k2}", rr, ("fixed", k2)) for rr in (8, 16, 32))
        + (Arm(f"fedit r={k2}", "fedit", k2, ("fixed", k2)),),
        tuple((f"fslora r={rr} k={k2}", f"fedit r={k2}") for rr in (8, 16, 32)))
    k3, ranks3 = 8, (8, 16, 32)     # r <= 32, the smallest weight dimension of every family
    claim3 = EmpiricalClaim(
        "claim3", "larger global rank at a fixed budget",
        f"With k_i = {k3} fixed, a larger global rank helps: r = 8 -> 16 -> 32 improves at every step (r up to "
        "the weights' rank, 32).",
        "rounds", Hypothesis("superior"),
        tuple(_fs(f"r={rr}", rr, ("fixed", k3)) for rr in ranks3),
        tuple((f"r={b}", f"r={a}") for a, b in zip(ranks3, ranks3[1:])))
    ks = (r, 12, 8, 4, 2)
    claim4 = EmpiricalClaim(
        "claim4", "lower sketching ratios degrade only slightly",
        f"Lower ratios degrade only slightly: at r = {r}, every k/r in {{3/4, 1/2, 1/4, 1/8}} ends within "
        f"{margin:.0%} of the k = r loss (non-inferiority margin).",
        "rounds", Hypothesis("noninferior", margin),
        tuple(_fs(f"k/r={k}/{r}", r, ("fixed", k)) for k in ks),
        tuple((f"k/r={k}/{r}", f"k/r={r}/{r}") for k in ks[1:]))
    # equal expected budget r/4 = 4: uniform and normal on [2, 6] (mean 4), heavy-tailed 2 + 14 Beta(0.5, 3)
    # on [2, 16] (mean 2 + 14/7 = 4); the realised means per seed are in the report
    low, mean = r // 8, r // 4
    ranges = {"uniform": (low, 2 * mean - low), "normal": (low, 2 * mean - low), "heavy_tail_low": (low, low + 7 * (mean - low))}
    claim5 = EmpiricalClaim(
        "claim5", "robustness to the budget distribution",
        f"Drawing the budgets k_i uniformly, normally or heavy-tailed toward low ranks, at the same expected budget "
        f"k = {mean} (r/4; uniform and normal on [{low}, {2 * mean - low}], heavy-tailed on [{low}, {low + 7 * (mean - low)}]), "
        f"changes FSLoRA's result only slightly: every pair ends within +-{margin:.0%} (equivalence margin).",
        "rounds", Hypothesis("equivalent", margin),
        tuple(_fs(d, r, ("distribution", d, *ranges[d])) for d in ranges),
        (("normal", "uniform"), ("heavy_tail_low", "uniform"), ("heavy_tail_low", "normal")))
    return [claim1, claim2, claim3, claim4, claim5]


def claim_ids() -> list:
    """The ids of the registered claims, in order.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from theory.empirical.claims import claim_ids
    >>> claim_ids()
    ['claim1', 'claim2', 'claim3', 'claim4', 'claim5']
    """
    return [c.id for c in build_claims()]


def _values(claim, runs, treatment, reference, metric):
    """Per-seed (treatment, reference) values on the claim's equal-cost axis, plus the rounds used."""
    ts, rs, where = [], [], []
    for a, b in zip(runs[claim.arm(treatment).key], runs[claim.arm(reference).key]):
        if claim.axis == "upload":
            if a.diverged_at is not None or b.diverged_at is not None:
                ts.append(None)
                rs.append(None)
                where.append(None)
                continue
            budget = min(a.upload_floats[-1], b.upload_floats[-1])
            (va, ta), (vb, tb) = a.at_upload(metric, budget), b.at_upload(metric, budget)
            ts.append(va)
            rs.append(vb)
            where.append({"upload_floats": budget, "treatment_round": ta, "reference_round": tb})
        else:
            ts.append(a.final(metric))
            rs.append(b.final(metric))
            where.append({"round": a.rounds[-1] if a.diverged_at is None else None})
    return ts, rs, where


def _require_progress(c: dict, reference_runs, metric: str, margin: float) -> dict:
    """A margin claim ("within 10%") says something only if training moved the loss by much more
    than the margin: otherwise two arms that barely trained are 'equivalent' trivially. A ``for``
    verdict needs the reference's mean log loss reduction since round 0 to exceed twice the
    margin band, log(L_0 / L_T) > 2 log(1 + margin); else it becomes undecided."""
    finite = [r for r in reference_runs if r.diverged_at is None]
    if not finite:
        return c
    progress = float(sum(np.log(r.metrics[metric][0] / r.final(metric)) for r in finite) / len(finite))
    need = 2.0 * float(np.log1p(margin))
    c = dict(c, reference_progress_log=progress, progress_needed_log=need)
    if c["verdict"] == FOR and progress <= need:
        c.update(verdict=UNDECIDED, reason=f"the reference's loss fell only {100 * np.expm1(progress):.1f}% since "
                 f"round 0, not more than twice the {margin:.0%} margin: too little training to call them equivalent")
    return c


def horizon(results, metric: str, rounds: int) -> dict:
    """Whether an arm has trained to a plateau by round T.

    From the mean over its finite seeds of the log loss fall since round 0, and of the fall over the
    last ``PLATEAU_TAIL`` of the rounds (from the last evaluation at or before (1 - PLATEAU_TAIL) T).

    Parameters
    ----------
    results : list of theory.empirical.runs.RunResult
        The arm's runs, one per seed.
    metric : str
        The loss.
    rounds : int
        The number of rounds T.

    Returns
    -------
    dict
        ``checked`` (False, with a ``reason``, when it cannot be told); else ``log_fall``,
        ``log_fall_last``, ``trained``, ``plateau``, ``ok`` and ``reason`` (None when ok).
    """
    finite = [r for r in results if r.diverged_at is None and len(r.rounds) >= 2]
    if not finite:
        return {"checked": False, "reason": "no finite run"}
    cut = (1.0 - PLATEAU_TAIL) * rounds
    falls, tails = [], []
    for r in finite:
        points = [(t, v) for t, v in zip(r.rounds, r.metrics[metric]) if v is not None]
        if len(points) < 2 or points[0][1] <= 0 or points[-1][1] <= 0:
            return {"checked": False, "reason": "fewer than two positive evaluations"}
        inside = [v for t, v in points if 0 < t <= cut]
        if not inside:
            return {"checked": False, "reason": f"no evaluation between round 0 and round {cut:g}: no plateau to check"}
        at_cut = inside[-1]
        falls.append(np.log(points[0][1] / points[-1][1]))
        tails.append(np.log(at_cut / points[-1][1]))
    fall, tail = float(np.mean(falls)), float(np.mean(tails))
    trained = fall > np.log1p(TRAINED_MIN_FALL)
    plateau = tail <= PLATEAU_SHARE * fall
    reason = None
    if not trained:
        reason = (f"its loss fell only by a factor {np.exp(fall):.3g} by round {rounds} (trained: a factor above "
                  f"{1 + TRAINED_MIN_FALL:g})")
    elif not plateau:
        reason = (f"still falling at round {rounds}: the last {PLATEAU_TAIL:.0%} of the rounds gave {tail / fall:.0%} of its "
                  f"log loss fall (a plateau gives <= {PLATEAU_SHARE:.0%})")
    return {"checked": True, "log_fall": fall, "log_fall_last": tail, "trained": bool(trained),
            "plateau": bool(plateau), "ok": reason is None, "reason": reason}


def _require_horizon(c: dict, treatment_h: dict, reference_h: dict) -> dict:
    """A comparison is decided only if both arms trained to a plateau by T (see :func:`horizon`)."""
    bad = [(who, h) for who, h in (("treatment", treatment_h), ("reference", reference_h))
           if h.get("checked") and not h["ok"]]
    if not bad or c["verdict"] == UNDECIDED:
        return c
    why = "; ".join(f"the {who} {h['reason']}" for who, h in bad)
    return dict(c, verdict=UNDECIDED, undecided_because="horizon",
                reason=f"would be {c['verdict']}, but {why}: a speed comparison at round T, not of trained models")


def weakest(comparisons) -> dict | None:
    """The comparison that decides the status.

    An ``against`` one first, then an undecided one, and among equals the one whose interval reaches
    furthest past the claimed region.

    Parameters
    ----------
    comparisons : list of dict
        :func:`theory.empirical.stats.compare` results.

    Returns
    -------
    dict or None
        None if there is none.
    """
    rank = {AGAINST: 2, UNDECIDED: 1, FOR: 0}
    scored = []
    for c in comparisons:
        if "ci_d" not in c:
            scored.append((rank[c["verdict"]], float("inf"), c))  # no interval (diverged runs)
            continue
        low, high = claimed_region(Metric(c["metric"], "", c["better"]), Hypothesis(c["hypothesis"], c["margin"]))
        lo, hi = c["ci_d"]
        scored.append((rank[c["verdict"]], max(hi - high, low - lo), c))
    return max(scored, key=lambda x: x[:2])[2] if scored else None


def evaluate(claim: EmpiricalClaim, family: str, runs: dict, seeds, settings_json: dict,
             alpha: float = ALPHA, metrics=tuple(METRICS.values()), tuned: dict | None = None) -> dict:
    """The report entry of ``claim`` on ``family``.

    Every comparison passes the horizon check (:func:`horizon`) on its metric; margin claims also need
    the reference to have trained by more than twice the margin.

    Parameters
    ----------
    claim : EmpiricalClaim
        The claim.
    family : str
        The family.
    runs : dict
        ``{arm key: [RunResult per seed, in seeds order]}``.
    seeds : list of int
        The evaluation seeds.
    settings_json : dict
        The family's settings (:meth:`theory.empirical.runs.Settings.to_json`).
    alpha : float, optional
        The one-sided level per direction.
    metrics : sequence of theory.empirical.stats.Metric, optional
        The first is primary (the held-out loss): the status is decided on it; the others are
        reported with their own status.
    tuned : dict, optional
        ``{arm label: tuning record}`` (:func:`theory.empirical.tuning.tune_arm`), reported per arm.

    Returns
    -------
    dict
        ``id``, ``claim``, ``family``, ``title``, ``statement``, ``status``, ``metric``, ``method``,
        ``key`` and ``evidence`` (per metric, every comparison; per arm, its rule, step and finals).
    """
    K = len(claim.comparisons)
    per_metric = {}
    rounds = int(settings_json.get("rounds") or max((r.rounds[-1] for rs in runs.values() for r in rs if r.rounds),
                                                    default=0))
    horizons = {m.name: {a.label: horizon(runs[a.key], m.name, rounds) for a in claim.arms}
                for m in metrics if m.log_scale}
    for metric in metrics:
        name = metric.name
        comps = []
        for treatment, reference in claim.comparisons:
            t, r, where = _values(claim, runs, treatment, reference, name)
            c = compare(t, r, metric, claim.hypothesis, n_comparisons=K, alpha=alpha)
            c = dict(c, treatment=treatment, reference=reference, evaluated_at=where)
            if claim.hypothesis.kind != "superior" and metric.log_scale:
                c = _require_progress(c, runs[claim.arm(reference).key], name, claim.hypothesis.margin)
            if metric.log_scale:
                c = _require_horizon(c, horizons[name][treatment], horizons[name][reference])
            comps.append(c)
        per_metric[name] = {"status": claim_status(c["verdict"] for c in comps), "comparisons": comps}
    primary = metrics[0].name
    arms = {}
    for arm in claim.arms:
        results = runs[arm.key]
        arms[arm.label] = {"algorithm": arm.algorithm, "rank": arm.rank, "rule": arm.describe(),
                           "budgets_seed0": results[0].budgets,
                           "upload_floats_final": [r.upload_floats[-1] if r.upload_floats else None for r in results],
                           "diverged_at": [r.diverged_at for r in results],
                           "diverged_reason": [r.diverged_reason for r in results],
                           "lr": results[0].lr if results else None,
                           "mean_budget": [float(np.mean(r.budgets)) for r in results],
                           "horizon": horizons.get(metrics[0].name, {}).get(arm.label),
                           **({"tuning": tuned[arm.label]} if tuned and arm.label in tuned else {}),
                           **{f"{m.name}_final": [r.final(m.name) for r in results] for m in metrics}}
    entry = {"id": f"{claim.id}.{family}", "claim": claim.id, "family": family, "title": claim.title,
             "statement": claim.statement, "status": per_metric[primary]["status"], "metric": primary,
             "method": method_text(claim, K, alpha)}
    entry["key"] = key_text(per_metric[primary])
    entry["evidence"] = {"seeds": list(seeds), "axis": claim.axis, "axis_text": claim.axis_text,
                         "hypothesis": claim.hypothesis.kind, "margin": claim.hypothesis.margin,
                         "alpha": alpha, "n_comparisons": K, "settings": settings_json,
                         "metrics": {m.name: m.description for m in metrics},
                         "arms": arms, "by_metric": per_metric,
                         "context_arms": list(claim.context)}
    return entry


def method_text(claim: EmpiricalClaim, K: int, alpha: float) -> str:
    """How the claim is tested, in one line (the test, alpha, Bonferroni, the axis).

    Parameters
    ----------
    claim : EmpiricalClaim
        The claim.
    K : int
        Its number of comparisons.
    alpha : float
        The one-sided level per direction.

    Returns
    -------
    str
    """
    level = 1 - 2 * alpha / K
    test = {"superior": "superiority: one-sided paired t-test on the per-seed log loss ratio",
            "noninferior": f"non-inferiority: one-sided paired t-test of the log loss ratio against log(1 + "
                           f"{claim.hypothesis.margin:g})",
            "equivalent": f"equivalence (TOST): paired log loss ratio inside +-log(1 + {claim.hypothesis.margin:g})"
            }[claim.hypothesis.kind]
    return (f"{test}; alpha = {alpha:g} per direction, Bonferroni over {K} comparison{'s' if K > 1 else ''} "
            f"(each a two-sided {level:.1%} paired t interval); {claim.axis_text.split(':')[0]}")


def key_text(metric_result: dict) -> str:
    """One line: the weakest comparison's effect and interval.

    Parameters
    ----------
    metric_result : dict
        ``{"status", "comparisons"}`` of one metric.

    Returns
    -------
    str
    """
    c = weakest(metric_result["comparisons"])
    if c is None:
        return "no comparison"
    name = f"{c['treatment']} vs {c['reference']}"
    if "effect" not in c:
        return f"{name}: {c.get('reason', 'undecided')}"
    lo, hi = c["effect_ci"]
    fmt = (lambda x: f"{100 * x:+.1f}%") if c["better"] == "lower" else (lambda x: f"{x:+.3f}")
    tail = "" if c["verdict"] == FOR else f" ({c['verdict']})"
    return f"{name}: {fmt(c['effect'])} [{fmt(lo)}, {fmt(hi)}]{tail}"
