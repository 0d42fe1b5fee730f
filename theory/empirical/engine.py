"""Tune the steps, run the arms the selected claims need once per (protocol, family, seed), then
evaluate every claim under every protocol.

First the steps are tuned on the tuning seeds, one unit of work per (protocol, family, tuned unit):
under the SGD protocol every arm is tuned on its own (tuning.py), under the paper protocol every
algorithm once, on its claim-1 arm (tuning_paper.py). Then the evaluation runs use those steps.
Arms shared by several claims (same algorithm, rank and budget rule) are tuned and run once per
protocol. Evaluation units of work are (protocol, family, seed) triples: each builds its problem
once and runs every needed arm on it, so results do not depend on the order or the process units
run in (``jobs`` > 1 uses worker processes; the longest units are submitted first). Every finished
tuning and run is stored in ``runs.json`` as its unit completes (see store.py).
"""
from __future__ import annotations

import contextlib
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from fslora_ref.algorithms import ALGORITHMS
from fslora_ref.algorithms.fslora import reuse_sketch_draws
from fslora_ref.algorithms.protocol import reuse_batch_draws
from fslora_ref.validation import check_workers

from . import claims as claims_mod
from . import tuning, tuning_paper
from .protocols import protocol as protocol_named
from .runs import RunResult, run_unit
from .settings import settings_for
from .stats import ALPHA

TUNING_VERSION = 2     # part of a tuning record's fingerprint: a changed rule is re-tuned, never reused


def needed_arms(claims) -> list:
    """Every arm of ``claims``, each run key once, in first-seen order.

    Parameters
    ----------
    claims : iterable of theory.empirical.claims.EmpiricalClaim
        The claims.

    Returns
    -------
    list of theory.empirical.runs.Arm
    """
    seen = {}
    for c in claims:
        for arm in c.arms:
            seen.setdefault(arm.key, arm)
    return list(seen.values())


def algorithm_name(obj) -> str:
    """What ran for an algorithm entry: "module.Class" of a class, or the factory's own ``name``.

    Parameters
    ----------
    obj : type or callable
        An entry of the algorithms mapping.

    Returns
    -------
    str
    """
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    return getattr(obj, "name", None) or f"{type(obj).__module__}.{type(obj).__qualname__}"


def _fingerprint(settings, arm, algorithms) -> dict:
    return {"settings": settings.to_json(), "arm": arm.key, "algorithm": algorithm_name(algorithms[arm.algorithm])}


def _per_algorithm(protocol_name: str) -> bool:
    return protocol_named(protocol_name).tuned_per == "algorithm"


def _tuning_fingerprint(settings, arm, algorithms, seeds) -> dict:
    paper = _per_algorithm(settings.protocol)
    return dict(_fingerprint(settings, arm, algorithms), tuning_seeds=list(seeds),
                grid=tuning_paper.grid() if paper else tuning.grid(settings.lr),
                rule="lowest_heldout" if paper else "half_largest_stable", version=TUNING_VERSION)


def tune_unit(settings, arm, seeds, algorithms=None) -> dict:
    """The tuning record of one unit: ``arm``'s step under ``settings.protocol`` (tuning.tune_arm for
    SGD, tuning_paper.tune_algorithm for the paper protocol's per-algorithm step).

    Parameters
    ----------
    settings : theory.empirical.runs.Settings
    arm : Arm
        The arm tuned (under the paper protocol: the algorithm's tuning arm).
    seeds : sequence of int
        Tuning seeds.
    algorithms : dict or None
        name -> Algorithm class or factory.

    Returns
    -------
    dict
        The tuning record.
    """
    if _per_algorithm(settings.protocol):
        return tuning_paper.tune_algorithm(settings, arm, seeds, algorithms)
    return tuning.tune_arm(settings, arm, seeds, algorithms)


def tuned_by(protocol_name: str, arm):
    """The arm whose tuning sets ``arm``'s step under ``protocol_name`` (itself, or its algorithm's tuning arm).

    Parameters
    ----------
    protocol_name : str
    arm : Arm

    Returns
    -------
    Arm
    """
    if _per_algorithm(protocol_name):
        return tuning_paper.tuning_arm(arm.algorithm, claims_mod.GLOBAL_RANK, claims_mod.PAPER_RATIOS)
    return arm


def tuning_units(protocol_name: str, arms) -> list:
    """The distinct arms tuned for ``arms`` under ``protocol_name``, in first-seen order.

    Parameters
    ----------
    protocol_name : str
    arms : list of Arm

    Returns
    -------
    list of Arm
    """
    return list({tuned_by(protocol_name, a).key: tuned_by(protocol_name, a) for a in arms}.values())


def _pool(jobs):
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context)


def _measured(call, *task):
    """``call(*task)`` inside one draw-reuse block, with the CPU and wall seconds it took in its process.

    The unit's runs share one seed's minibatch and sketch draws (every arm of an evaluation seed,
    every step of a tuning grid): the draws are a pure function of (seed, round, client, ...), so
    sharing them changes no number (tests/theory/test_claims_reuse.py) and saves the generators.
    """
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.ExitStack() as reuse:
        reuse.enter_context(reuse_sketch_draws())
        reuse.enter_context(reuse_batch_draws())
        result = call(*task)
    return result, time.process_time() - cpu, time.perf_counter() - start


def _run_all(tasks, jobs, call, finished, cost=None):
    """Run ``call(*task)`` for every task, in process when jobs <= 1; ``finished(task, result)`` as each ends;
    ``cost(task, cpu_seconds, wall_seconds)`` with what each unit took in its process."""
    def done(task, measured):
        result, cpu, wall = measured
        if cost is not None:
            cost(task, cpu, wall)
        finished(task, result)

    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            done(task, _measured(call, *task))
        return
    with _pool(check_workers("jobs", jobs, len(tasks))) as pool:  # never more workers than units of work
        futures = {pool.submit(_measured, call, *task): task for task in tasks}
        try:
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def add_cost(cost: dict, phase: str, settings, cpu_seconds: float, wall_seconds: float) -> None:
    """Add one finished unit to ``cost[phase/protocol/family]`` (units, CPU and wall seconds in its process).

    Parameters
    ----------
    cost : dict
        ``{"phase/protocol/family": {"units", "cpu_seconds", "wall_seconds"}}``, filled in place.
    phase : {"tuning", "evaluation"}
    settings : theory.empirical.runs.Settings
        The unit's settings (its protocol and family).
    cpu_seconds, wall_seconds : float
        What the unit took.
    """
    entry = cost.setdefault(f"{phase}/{settings.protocol}/{settings.family}",
                            {"units": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0})
    entry["units"] += 1
    entry["cpu_seconds"] += float(cpu_seconds)
    entry["wall_seconds"] += float(wall_seconds)


def tune_all(arms, plans, tuning_seeds, *, store, jobs, algorithms, progress=None, cost=None) -> dict:
    """Tune the steps of every (protocol, family) (:func:`tune_unit`), from ``store`` where already done.

    Parameters
    ----------
    arms : list of theory.empirical.runs.Arm
        The arms the claims run (under the paper protocol each algorithm is tuned once, :func:`tuning_units`).
    plans : dict
        ``{(protocol, family): Settings}``.
    tuning_seeds : sequence of int
        The tuning seeds.
    store : theory.empirical.store.RunStore
        Supplies earlier tuning records and keeps new ones.
    jobs : int
        Worker processes (1: in process).
    algorithms : dict
        ``{name: Algorithm class or factory}``.
    progress : object, optional
        Told ``update(1, text)`` per tuned unit.
    cost : dict, optional
        Filled with what the units took (:func:`add_cost`, phase "tuning").

    Returns
    -------
    dict
        ``{(protocol, family): {tuned arm key: tuning record}}``.
    """
    tuned, todo = {k: {} for k in plans}, []
    for (p, f), st in plans.items():
        for a in tuning_units(p, arms):
            stored = store.get(f"{p}/tune/{f}/{a.key}", _tuning_fingerprint(st, a, algorithms, tuning_seeds))
            if stored is None:
                todo.append((st, a, tuple(tuning_seeds), algorithms))
            else:
                tuned[(p, f)][a.key] = stored
                if progress is not None:
                    progress.update(1, f"tuned {p} {f} {a.label} (stored)")

    def finished(task, record):
        st, a = task[0], task[1]
        tuned[(st.protocol, st.family)][a.key] = record
        store.put([(f"{st.protocol}/tune/{st.family}/{a.key}", _tuning_fingerprint(st, a, algorithms, tuning_seeds),
                    record)])
        if progress is not None:
            progress.update(1, f"tuned {st.protocol} {st.family} {a.label}: lr {record['chosen']}")

    # the longest units first (less idle time at the end): per-algorithm tunings score several steps fully
    todo.sort(key=lambda task: (-task[0].rounds, not _per_algorithm(task[0].protocol)))
    _run_all(todo, jobs, tune_unit, finished,
             None if cost is None else lambda task, cpu, wall: add_cost(cost, "tuning", task[0], cpu, wall))
    return tuned


def _not_run(arm, settings, seed, record) -> dict:
    """The record of an arm with no stable step: diverged before round 0, never data."""
    budgets = arm.budgets(settings.clients, seed)
    describe = tuning_paper.describe if record.get("rule") == "lowest_heldout" else tuning.describe
    return RunResult(arm.key, seed, budgets).diverge(0, "not run: " + describe(record)).to_json()


def run_protocols(claims, families, seeds, protocols, *, quick: bool, store, jobs: int = 1, algorithms=None,
                  progress=None, rounds: int | None = None, clients: int | None = None, alpha: float = ALPHA,
                  tuning_seeds=None, tuning_progress=None, cost=None) -> dict:
    """Tune, run and evaluate every claim on every family under every protocol.

    Parameters
    ----------
    claims : list of theory.empirical.claims.EmpiricalClaim
        The claims.
    families : list of str
        The families.
    seeds : list of int
        The evaluation seeds (disjoint from the tuning seeds).
    protocols : list of str
        Protocol names (protocols.py), in report order.
    quick : bool
        The quick size.
    store : theory.empirical.store.RunStore
        Supplies tuning records and runs finished earlier and keeps new ones.
    jobs : int, optional
        Worker processes.
    algorithms : dict or None, optional
        ``{name: Algorithm class or factory}`` (default: the reference's ``ALGORITHMS``; tests pass a
        broken FSLoRA here).
    progress : object, optional
        Told ``update(n, text)`` as runs finish.
    rounds : int or None, optional
        T, overriding the size's.
    clients : int or None, optional
        N, overriding the size's.
    alpha : float, optional
        The one-sided level per claim.
    tuning_seeds : sequence of int, optional
        The tuning seeds (default by size).
    tuning_progress : object, optional
        Progress of the tuning (closed when it ends).
    cost : dict, optional
        Filled with what the work took: per (phase, protocol, family) the units computed here (not
        taken from ``store``) with their CPU and wall seconds in their processes (:func:`add_cost`),
        and ``phase_wall_seconds`` per phase (timing only: never part of a result).

    Returns
    -------
    dict
        ``{protocol: (entries, runs, settings, tuned)}``: the report entries, one per (claim, family)
        (:func:`theory.empirical.claims.evaluate`); ``{family: {arm key: [RunResult per seed]}}``;
        ``{family: Settings}``; ``{family: {arm key: tuning record}}``.

    Raises
    ------
    ValueError
        If the evaluation seeds include a tuning seed.
    """
    algorithms = dict(algorithms or ALGORITHMS)
    arms = needed_arms(claims)
    plans = {(p, f): settings_for(f, quick, rounds=rounds, clients=clients, protocol=p) for p in protocols for f in families}
    tuning_seeds = tuple(tuning_seeds if tuning_seeds is not None else tuning.TUNING_SEEDS["quick" if quick else "full"])
    overlap = set(tuning_seeds) & set(seeds)
    if overlap:
        raise ValueError(f"--seeds: the evaluation seeds must not include the tuning seeds {sorted(overlap)}")
    started = time.perf_counter()
    by_unit = tune_all(arms, plans, tuning_seeds, store=store, jobs=jobs, algorithms=algorithms, progress=tuning_progress,
                       cost=cost)
    if cost is not None:
        cost.setdefault("phase_wall_seconds", {})["tuning"] = time.perf_counter() - started
        started = time.perf_counter()
    if tuning_progress is not None:
        tuning_progress.close()
    tuned = {k: {a.key: by_unit[k][tuned_by(k[0], a).key] for a in arms} for k in plans}
    lrs = {k: {a.key: tuned[k][a.key]["chosen"] for a in arms} for k in plans}
    done, todo = {}, []
    for (p, f), st in plans.items():
        for s in seeds:
            missing = []
            for a in arms:
                lr = lrs[(p, f)][a.key]
                if lr is None:
                    done[(p, f, s, a.key)] = _not_run(a, st, s, tuned[(p, f)][a.key])
                    continue
                stored = store.get(f"{p}/{f}/seed{s}/{a.key}", _fingerprint(st.with_lr(lr), a, algorithms))
                if stored is None:
                    missing.append(a)
                else:
                    done[(p, f, s, a.key)] = stored
            if progress is not None and len(missing) < len(arms):
                progress.update(len(arms) - len(missing), f"{p} {f} seed {s} (stored or not run)")
            if missing:
                todo.append((st, s, missing, algorithms, None, lrs[(p, f)]))

    def finished(task, unit_runs):
        st, s, missing = task[0], task[1], task[2]
        p, f = st.protocol, st.family
        for a in missing:
            done[(p, f, s, a.key)] = unit_runs[a.key]
        store.put([(f"{p}/{f}/seed{s}/{a.key}", _fingerprint(st.with_lr(lrs[(p, f)][a.key]), a, algorithms),
                    unit_runs[a.key]) for a in missing])
        if progress is not None:
            progress.update(len(missing), f"{p} {f} seed {s}")

    todo.sort(key=lambda task: -task[0].rounds * len(task[2]))   # the longest units first
    _run_all(todo, jobs, run_unit, finished,
             None if cost is None else lambda task, cpu, wall: add_cost(cost, "evaluation", task[0], cpu, wall))
    if cost is not None:
        cost["phase_wall_seconds"]["evaluation"] = time.perf_counter() - started
    out = {}
    for p in protocols:
        runs = {f: {a.key: [RunResult(**done[(p, f, s, a.key)]) for s in seeds] for a in arms} for f in families}
        entries = [claims_mod.evaluate(c, f, runs[f], seeds, plans[(p, f)].to_json(), alpha=alpha, protocol=p,
                                       tuned={a.label: tuned[(p, f)][a.key] for a in c.arms})
                   for c in claims for f in families]
        out[p] = (entries, runs, {f: plans[(p, f)] for f in families},
                  {f: tuned[(p, f)] for f in families})
    return out


def run_claims(claims, families, seeds, *, quick: bool, store, jobs: int = 1, algorithms=None, progress=None,
               rounds: int | None = None, clients: int | None = None, alpha: float = ALPHA,
               tuning_seeds=None, tuning_progress=None, protocol: str = "sgd") -> tuple:
    """Tune, run and evaluate the claims under one protocol (:func:`run_protocols` with ``[protocol]``).

    Parameters
    ----------
    claims, families, seeds, quick, store, jobs, algorithms, progress, rounds, clients, alpha, tuning_seeds, tuning_progress
        As for :func:`run_protocols`.
    protocol : {"sgd", "paper"}, default "sgd"
        The optimiser protocol.

    Returns
    -------
    entries : list of dict
        One report entry per (claim, family).
    runs : dict
        ``{family: {arm key: [RunResult per seed]}}``.
    settings : dict
        ``{family: Settings}``.
    tuned : dict
        ``{family: {arm key: tuning record}}``.
    """
    return run_protocols(claims, families, seeds, [protocol], quick=quick, store=store, jobs=jobs,
                         algorithms=algorithms, progress=progress, rounds=rounds, clients=clients, alpha=alpha,
                         tuning_seeds=tuning_seeds, tuning_progress=tuning_progress)[protocol]
