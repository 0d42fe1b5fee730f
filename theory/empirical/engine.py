"""Run the arms the selected claims need, once per (family, seed), then evaluate every claim.

Arms shared by several claims (same algorithm, rank and budget rule) run once. Units of work
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
from .runs import RunResult, run_unit
from .settings import settings_for
from .stats import ALPHA


def needed_arms(claims) -> list:
    """Every arm of ``claims``, each run key once, in first-seen order."""
    seen = {}
    for c in claims:
        for arm in c.arms:
            seen.setdefault(arm.key, arm)
    return list(seen.values())


def _fingerprint(settings, arm, algorithms) -> dict:
    cls = algorithms[arm.algorithm]
    return {"settings": settings.to_json(), "arm": arm.key, "algorithm": f"{cls.__module__}.{cls.__qualname__}"}


def run_claims(claims, families, seeds, *, quick: bool, store, jobs: int = 1, algorithms=None, progress=None,
               rounds: int | None = None, clients: int | None = None, alpha: float = ALPHA) -> tuple:
    """Run and evaluate. Returns (report entries, {family: {arm key: [RunResult per seed]}},
    {family: Settings}). ``store`` (a RunStore) supplies runs finished earlier and keeps new ones."""
    algorithms = dict(algorithms or ALGORITHMS)
    arms = needed_arms(claims)
    settings = {f: settings_for(f, quick, rounds=rounds, clients=clients) for f in families}
    done, todo = {}, []
    for f in families:
        for s in seeds:
            missing = []
            for a in arms:
                stored = store.get(f"{f}/seed{s}/{a.key}", _fingerprint(settings[f], a, algorithms))
                if stored is None:
                    missing.append(a)
                else:
                    done[(f, s, a.key)] = stored
            if progress is not None and len(missing) < len(arms):
                progress.update(len(arms) - len(missing), f"{f} seed {s} (stored)")
            if missing:
                todo.append((f, s, missing))

    def finished(f, s, unit_runs):
        new = [a for a in arms if a.key in unit_runs]
        for a in new:
            done[(f, s, a.key)] = unit_runs[a.key]
        store.put([(f"{f}/seed{s}/{a.key}", _fingerprint(settings[f], a, algorithms), unit_runs[a.key]) for a in new])

    if jobs <= 1 or len(todo) <= 1:
        for f, s, missing in todo:
            tick = (lambda arm, f=f, s=s: progress.update(1, f"{f} seed {s} {arm.label}")) if progress else None
            finished(f, s, run_unit(settings[f], s, missing, algorithms, on_arm=tick))
    else:
        context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
        # never more workers than units of work (`--jobs 64` for 2 units started 64 processes)
        with ProcessPoolExecutor(max_workers=check_workers("jobs", jobs, len(todo)), mp_context=context) as pool:
            futures = {pool.submit(run_unit, settings[f], s, missing, algorithms): (f, s, missing)
                       for f, s, missing in todo}
            try:
                for fut in as_completed(futures):
                    f, s, missing = futures[fut]
                    finished(f, s, fut.result())
                    if progress is not None:
                        progress.update(len(missing), f"{f} seed {s}")
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    runs = {f: {a.key: [RunResult(**done[(f, s, a.key)]) for s in seeds] for a in arms} for f in families}
    entries = [claims_mod.evaluate(c, f, runs[f], seeds, settings[f].to_json(), alpha=alpha)
               for c in claims for f in families]
    return entries, runs, settings
