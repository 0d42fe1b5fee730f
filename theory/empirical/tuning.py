"""Each arm's client step size, tuned by a fixed rule on tuning seeds the claims never evaluate.

The rule (stated in report.md, recorded per arm in report.json):

    grid    base * 2**j, j = -3 .. 6 (a doubling grid around the family's base step, settings.py)
    stable  a step is stable when, on every tuning seed, the run neither diverges (runs.py: non-finite,
            or a loss above DIVERGENCE_MULTIPLE x its round-0 value, or a numerical failure) nor ends
            with a training loss above its round-0 value
    chosen  half the largest stable grid step (a factor-2 margin: a step at the edge of stability on
            three seeds may diverge on another); no stable step: the arm is not run and counts as
            diverged in every comparison

The grid is searched from the top down and a step is abandoned at its first unstable tuning seed,
so a search costs the cheap divergent runs (stopped at their first evaluation above the limit) plus
one full run per tuning seed at the largest stable step. Tuning seeds (1000, 1001, 1002; --quick:
1000, 1001) are disjoint from the evaluation seeds 0 .. n-1, so no evaluated run chose its own step.
Every arm (algorithm, rank, budget rule) is tuned on its own at the claims' own T, N and H.
"""
from __future__ import annotations

from .runs import Arm, RunResult, Settings, run_arm

TUNING_SEEDS = {"full": (1000, 1001, 1002), "quick": (1000, 1001)}
GRID_EXPONENTS = tuple(range(-3, 7))
RULE = ("half the largest stable step of the doubling grid base x 2^j, j = -3..6 (stable: on every tuning seed "
        "the run does not diverge - non-finite, above {multiple:g}x its round-0 loss, or a numerical failure - and "
        "ends below its round-0 training loss), tuned per arm at the claims' own T, N, H on tuning seeds {seeds}, "
        "disjoint from the evaluation seeds")


def grid(base: float) -> list:
    """The doubling grid around ``base``, ascending: base * 2**j for j in ``GRID_EXPONENTS``.

    Parameters
    ----------
    base : float
        The family's base step.

    Returns
    -------
    list of float

    Examples
    --------
    >>> from theory.empirical.tuning import grid
    >>> steps = grid(1.0)
    >>> steps[0], steps[3], steps[-1]
    (0.125, 1.0, 64.0)
    """
    return [float(base) * 2.0 ** j for j in GRID_EXPONENTS]


def _outcome(run: RunResult) -> dict:
    """What a tuning run says about its step: stable or why not, and its losses."""
    rec = {"seed": run.seed, "diverged_at": run.diverged_at, "reason": run.diverged_reason}
    if run.diverged_at is None:
        start, end = run.metrics["train"][0], run.metrics["train"][-1]
        rec.update(train_initial=start, train_final=end, heldout_final=run.metrics["heldout"][-1])
        if not end < start:
            rec["reason"] = f"training loss ended at {end:.4g}, not below its round-0 value {start:.4g}"
    rec["stable"] = rec["reason"] is None
    return rec


def tune_arm(settings: Settings, arm: Arm, seeds, algorithms=None, on_run=None) -> dict:
    """Search the grid of ``settings.lr`` from the top down for ``arm``'s largest stable step.

    Parameters
    ----------
    settings : theory.empirical.runs.Settings
        The family's run settings; ``settings.lr`` is the grid's base.
    arm : Arm
    seeds : sequence of int
        Tuning seeds (disjoint from the evaluation seeds).
    algorithms : dict or None
        name -> Algorithm class or factory (default: the reference's).
    on_run : callable or None
        Called after every tuning run (progress).

    Returns
    -------
    dict
        ``{"arm", "grid", "seeds", "tried": [{"lr", "stable", "runs": [...]}, ...] (top down),
        "largest_stable", "chosen" (None if no grid step is stable), "top_stable"}``.
    """
    steps = grid(settings.lr)
    problems, tried, largest = {}, [], None
    for lr in reversed(steps):
        runs = []
        for seed in seeds:
            if seed not in problems:
                problems[seed] = settings.problem(seed)
            runs.append(_outcome(run_arm(arm, settings.with_lr(lr), seed, problems[seed], algorithms)))
            if on_run is not None:
                on_run()
            if not runs[-1]["stable"]:
                break                    # one unstable tuning seed rules the step out
        stable = len(runs) == len(seeds) and all(r["stable"] for r in runs)
        entry = {"lr": lr, "stable": stable, "runs": runs}
        if stable:
            finals = [r["heldout_final"] for r in runs]
            entry["heldout_final_mean"] = sum(finals) / len(finals)
        tried.append(entry)
        if stable:
            largest = lr
            break
    return {"arm": arm.key, "grid": steps, "seeds": list(seeds), "tried": tried, "largest_stable": largest,
            "chosen": None if largest is None else largest / 2.0, "top_stable": largest == steps[-1]}


def describe(tuned: dict) -> str:
    """One line: the chosen step and what chose it.

    Parameters
    ----------
    tuned : dict
        :func:`tune_arm`'s result.

    Returns
    -------
    str
    """
    if tuned["chosen"] is None:
        return f"no stable step on the grid {tuned['grid'][0]:.3g}..{tuned['grid'][-1]:.3g}: not run"
    above = [t for t in tuned["tried"] if not t["stable"]]
    why = ""
    if above:
        first = next(r for r in above[-1]["runs"] if not r["stable"])
        why = f"; {above[-1]['lr']:.3g} unstable (seed {first['seed']}: {first['reason']})"
    top = " (the grid's top: larger steps untested)" if tuned["top_stable"] else ""
    stable = tuned["tried"][-1]
    return (f"lr {tuned['chosen']:.3g} = half of {tuned['largest_stable']:.3g}, the largest stable step{top} "
            f"(tuning mean held-out loss there {stable['heldout_final_mean']:.4g}){why}")
