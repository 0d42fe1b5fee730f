"""The paper protocol's step, tuned once per algorithm by a fixed rule on the tuning seeds.

Under client AdamW and a server Adam step nothing diverges on a wide grid (Adam moves each
coordinate by about its step whatever the gradient's scale): measured on all three families, steps
64x apart all trained and none blew up, but a large step ends on a worse, noisier plateau. So the
SGD rule (half the largest stable step, tuning.py) would pick the grid's top here; the rule for
this protocol is the standard one for adaptive optimisers instead (stated in report.md, recorded
per algorithm in report.json):

    grid    0.016 * 2**j, j = -4 .. 4 (0.001 .. 0.256; the paper's own step, 3e-4, is for LLM
            weights of another scale), the same for every family
    score   the mean over the tuning seeds of the final held-out loss; a step at which a tuning
            run diverges (runs.py) or ends above its round-0 training loss is unusable (score inf)
    chosen  the grid step of lowest score, found by descent from 0.016: score it and both
            neighbours, move to the best neighbour while it is better (a unimodal search; every
            step scored is in the record). No usable step: the algorithm is not run.

One step per algorithm, tuned on its claim-1 arm (r = 16, the paper's ratios; FedIT at full rank)
at the claims' own T, N and H and used by all its arms, as the paper uses one gamma for its
ablations. Tuning seeds as for SGD (1000, 1001, 1002; --quick: 1000, 1001), disjoint from the
evaluation seeds.
"""
from __future__ import annotations

import math

from .runs import Arm, Settings, run_arm
from .tuning import _outcome

BASE = 0.016
GRID_EXPONENTS = tuple(range(-4, 5))
RULE = ("one step per algorithm (client AdamW step = server Adam step), tuned on the algorithm's claim-1 arm: the "
        "step of the doubling grid 0.016 x 2^j, j = -4..4, with the lowest mean final held-out loss on tuning seeds "
        "{seeds} (disjoint from the evaluation seeds), found by descent from 0.016; a step whose tuning run diverges "
        "(non-finite, above {multiple:g}x its round-0 loss, or a numerical failure) or ends above its round-0 "
        "training loss is unusable")


def grid() -> list:
    """The doubling grid, ascending: BASE * 2**j for j in GRID_EXPONENTS.

    Returns
    -------
    list of float
    """
    return [BASE * 2.0 ** j for j in GRID_EXPONENTS]


def tuning_arm(algorithm: str, rank: int, ratios) -> Arm:
    """The arm an algorithm's paper-protocol step is tuned on: rank ``rank``, the paper's budget ratios.

    Parameters
    ----------
    algorithm : str
    rank : int
        The claim-1 global rank.
    ratios : tuple of float
        The paper's k_i/r ratios (cycled over clients; FedIT trains the full rank regardless).

    Returns
    -------
    Arm
    """
    return Arm(f"{algorithm} (tuning)", algorithm, rank, ("ratios", tuple(ratios)))


def tune_algorithm(settings: Settings, arm: Arm, seeds, algorithms=None, on_run=None) -> dict:
    """Descend the grid from BASE to the step of lowest mean final held-out loss on ``seeds``.

    Parameters
    ----------
    settings : theory.empirical.runs.Settings
        The family's run settings under the paper protocol (``settings.lr`` is not used).
    arm : Arm
        The algorithm's tuning arm (:func:`tuning_arm`).
    seeds : sequence of int
        Tuning seeds (disjoint from the evaluation seeds).
    algorithms : dict or None
        name -> Algorithm class or factory (default: the reference's).
    on_run : callable or None
        Called after every tuning run (progress).

    Returns
    -------
    dict
        ``{"rule": "lowest_heldout", "arm", "grid", "seeds", "tried": [{"lr", "stable", "runs",
        "heldout_final_mean"?}, ...] (in the order scored), "chosen" (None if no step is usable),
        "edge" (the chosen step is the grid's first or last: a better one may lie beyond)}``.
    """
    steps = grid()
    problems, scored = {}, {}
    tried = []

    def score(i: int) -> float:
        if i in scored:
            return scored[i]
        runs = []
        for seed in seeds:
            if seed not in problems:
                problems[seed] = settings.problem(seed)
            runs.append(_outcome(run_arm(arm, settings.with_lr(steps[i]), seed, problems[seed], algorithms)))
            if on_run is not None:
                on_run()
            if not runs[-1]["stable"]:
                break                      # one unusable tuning seed rules the step out
        stable = len(runs) == len(seeds) and all(r["stable"] for r in runs)
        entry = {"lr": steps[i], "stable": stable, "runs": runs}
        if stable:
            entry["heldout_final_mean"] = sum(r["heldout_final"] for r in runs) / len(runs)
        tried.append(entry)
        scored[i] = entry["heldout_final_mean"] if stable else math.inf
        return scored[i]

    best = steps.index(BASE)
    score(best)
    while True:
        neighbours = [j for j in (best - 1, best + 1) if 0 <= j < len(steps)]
        candidate = min(neighbours, key=score)
        if not score(candidate) < score(best):
            break
        best = candidate
    usable = math.isfinite(scored[best])
    return {"rule": "lowest_heldout", "arm": arm.key, "grid": steps, "seeds": list(seeds), "tried": tried,
            "chosen": steps[best] if usable else None,
            "edge": usable and best in (0, len(steps) - 1)}


def describe(tuned: dict) -> str:
    """One line: the chosen step and what chose it.

    Parameters
    ----------
    tuned : dict
        A record of :func:`tune_algorithm`.

    Returns
    -------
    str
    """
    if tuned["chosen"] is None:
        return f"no usable step on the grid {tuned['grid'][0]:.3g}..{tuned['grid'][-1]:.3g}: not run"
    best = next(t for t in tuned["tried"] if t["lr"] == tuned["chosen"])
    edge = " (the grid's edge: steps beyond it untested)" if tuned["edge"] else ""
    return (f"lr {tuned['chosen']:.3g}, the lowest mean held-out loss on the tuning seeds "
            f"({best['heldout_final_mean']:.4g}) of the {len(tuned['tried'])} steps scored{edge}")
