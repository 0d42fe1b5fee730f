"""Tune each arm's step, run the arms the selected claims need once per (family, seed), then
evaluate every claim.

First every arm's client step is tuned on the tuning seeds (tuning.py), one unit of work per
(family, arm); then the evaluation runs use those steps. Arms shared by several claims (same
algorithm, rank and budget rule) are tuned and run once. Evaluation units of work
are (family, seed) pairs: each builds its problem once and runs every needed arm on it, so
results do not depend on the order or the process units run in (``jobs`` > 1 uses worker
processes). Every finished run is stored in ``runs.json`` as its unit completes (see store.py).
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed

from fslora_ref.algorithms import ALGORITHMS
from fslora_ref.validation import check_workers

from . import claims as claims_mod
from . import tuning
from .runs import RunResult, run_unit
from .settings import settings_for
from .stats import ALPHA

TUNING_VERSION = 1     # part of a tuning record's fingerprint: a changed rule is re-tuned, never reused


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


def _tuning_fingerprint(settings, arm, algorithms, seeds) -> dict:
    return dict(_fingerprint(settings, arm, algorithms), tuning_seeds=list(seeds), grid=tuning.grid(settings.lr),
                version=TUNING_VERSION)


def _pool(jobs):
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context)


def _run_all(tasks, jobs, call, finished):
    """Run ``call(*task)`` for every task, in process when jobs <= 1; ``finished(task, result)`` as each ends."""
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            finished(task, call(*task))
        return
    with _pool(check_workers("jobs", jobs, len(tasks))) as pool:  # never more workers than units of work
        futures = {pool.submit(call, *task): task for task in tasks}
        try:
            for fut in as_completed(futures):
                finished(futures[fut], fut.result())
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def tune_arms(arms, families, settings, tuning_seeds, *, store, jobs, algorithms, progress=None) -> dict:
    """Tune every arm's step per family (:func:`theory.empirical.tuning.tune_arm`), from ``store`` where already done.

    Parameters
    ----------
    arms : list of theory.empirical.runs.Arm
        The arms.
    families : iterable of str
        The families.
    settings : dict
        ``{family: Settings}``.
    tuning_seeds : sequence of int
        The tuning seeds.
    store : theory.empirical.store.RunStore
        Supplies earlier tuning records and keeps new ones.
    jobs : int
        Worker processes (1: in process).
    algorithms : dict
        ``{name: Algorithm class or factory}``.
    progress : object, optional
        Told ``update(1, text)`` per tuned arm.

    Returns
    -------
    dict
        ``{family: {arm key: tuning record}}``.
    """
    tuned, todo = {f: {} for f in families}, []
    for f in families:
        for a in arms:
            stored = store.get(f"tune/{f}/{a.key}", _tuning_fingerprint(settings[f], a, algorithms, tuning_seeds))
            if stored is None:
                todo.append((settings[f], a, tuple(tuning_seeds), algorithms))
            else:
                tuned[f][a.key] = stored
                if progress is not None:
                    progress.update(1, f"tuned {f} {a.label} (stored)")

    def finished(task, record):
        s, a = task[0], task[1]
        tuned[s.family][a.key] = record
        store.put([(f"tune/{s.family}/{a.key}", _tuning_fingerprint(s, a, algorithms, tuning_seeds), record)])
        if progress is not None:
            progress.update(1, f"tuned {s.family} {a.label}: lr {record['chosen']}")

    _run_all(todo, jobs, tuning.tune_arm, finished)
    return tuned


def _not_run(arm, settings, seed, record) -> dict:
    """The record of an arm with no stable step: diverged before round 0, never data."""
    budgets = arm.budgets(settings.clients, seed)
    return RunResult(arm.key, seed, budgets).diverge(0, "not run: " + tuning.describe(record)).to_json()


def run_claims(claims, families, seeds, *, quick: bool, store, jobs: int = 1, algorithms=None, progress=None,
               rounds: int | None = None, clients: int | None = None, alpha: float = ALPHA,
               tuning_seeds=None, tuning_progress=None) -> tuple:
    """Tune, run and evaluate the claims.

    Parameters
    ----------
    claims : list of theory.empirical.claims.EmpiricalClaim
        The claims.
    families : list of str
        The families.
    seeds : list of int
        The evaluation seeds (disjoint from the tuning seeds).
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

    Returns
    -------
    entries : list of dict
        One report entry per (claim, family) (:func:`theory.empirical.claims.evaluate`).
    runs : dict
        ``{family: {arm key: [RunResult per seed]}}``.
    settings : dict
        ``{family: Settings}``.
    tuned : dict
        ``{family: {arm key: tuning record}}``.

    Raises
    ------
    ValueError
        If the evaluation seeds include a tuning seed.
    """
    algorithms = dict(algorithms or ALGORITHMS)
    arms = needed_arms(claims)
    settings = {f: settings_for(f, quick, rounds=rounds, clients=clients) for f in families}
    tuning_seeds = tuple(tuning_seeds if tuning_seeds is not None else tuning.TUNING_SEEDS["quick" if quick else "full"])
    overlap = set(tuning_seeds) & set(seeds)
    if overlap:
        raise ValueError(f"--seeds: the evaluation seeds must not include the tuning seeds {sorted(overlap)}")
    tuned = tune_arms(arms, families, settings, tuning_seeds, store=store, jobs=jobs, algorithms=algorithms,
                      progress=tuning_progress)
    if tuning_progress is not None:
        tuning_progress.close()
    lrs = {f: {a.key: tuned[f][a.key]["chosen"] for a in arms} for f in families}
    done, todo = {}, []
    for f in families:
        for s in seeds:
            missing = []
            for a in arms:
                lr = lrs[f][a.key]
                if lr is None:
                    done[(f, s, a.key)] = _not_run(a, settings[f], s, tuned[f][a.key])
                    continue
                stored = store.get(f"{f}/seed{s}/{a.key}", _fingerprint(settings[f].with_lr(lr), a, algorithms))
                if stored is None:
                    missing.append(a)
                else:
                    done[(f, s, a.key)] = stored
            if progress is not None and len(missing) < len(arms):
                progress.update(len(arms) - len(missing), f"{f} seed {s} (stored or not run)")
            if missing:
                todo.append((settings[f], s, missing, algorithms, None, lrs[f]))

    def finished(task, unit_runs):
        st, s, missing = task[0], task[1], task[2]
        f = st.family
        for a in missing:
            done[(f, s, a.key)] = unit_runs[a.key]
        store.put([(f"{f}/seed{s}/{a.key}", _fingerprint(st.with_lr(lrs[f][a.key]), a, algorithms), unit_runs[a.key])
                   for a in missing])
        if progress is not None:
            progress.update(len(missing), f"{f} seed {s}")

    _run_all(todo, jobs, run_unit, finished)
    runs = {f: {a.key: [RunResult(**done[(f, s, a.key)]) for s in seeds] for a in arms} for f in families}
    entries = [claims_mod.evaluate(c, f, runs[f], seeds, settings[f].to_json(), alpha=alpha,
                                   tuned={a.label: tuned[f][a.key] for a in c.arms})
               for c in claims for f in families]
    return entries, runs, settings, tuned
