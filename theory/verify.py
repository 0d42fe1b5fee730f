"""Library side of ``fslora verify``: run the claims registry, print the table, write report.md /
report.json / plots; 1 if any claim is violated. Bad values (including an ``impl`` that cannot be
loaded) are one-line ValueErrors.

The checks are many small dense linear-algebra calls: multithreaded BLAS makes them ~10x slower
on a shared machine, so the `fslora verify` command sets one BLAS thread before numpy loads.
"""
from __future__ import annotations

import os
import time

from fslora_ref.outputs import check_output_names, prepare_output_dir
from fslora_ref.progress import Progress

from . import claims, report
from .result import VIOLATED


def claim_ids(text: str | None) -> list | None:
    """The claim ids of a comma-separated ``--only`` list.

    Parameters
    ----------
    text : str or None
        The list (None: every claim).

    Returns
    -------
    list of str or None
        The ids, or None for every claim.

    Raises
    ------
    ValueError
        If the list is empty or names an unknown id (the message lists the known ones).
    """
    if text is None:
        return None
    only = [s.strip() for s in text.split(",") if s.strip()]
    known = {c.id for c in claims.CLAIMS}
    unknown = [s for s in only if s not in known]
    if not only:
        raise ValueError(f"--only must name at least one claim id; known: {sorted(known)}")
    if unknown:
        raise ValueError(f"--only: unknown claim ids {unknown}; known: {sorted(known)}")
    return only


def run_verify(out: str, *, quick: bool = False, impl: str | None = None, only: str | list | None = None) -> int:
    """Check the claims, print the table, write the report into ``out``.

    Parameters
    ----------
    out : str
        Output directory (report.md, report.json, plots).
    quick : bool
        One Theorem 4.4 setting, shorter sweeps, fewer rounds.
    impl : str or None
        ``MODULE:ATTR`` of the implementation the algorithm-level claims run through (default: the reference).
    only : str, list or None
        Claim ids to run (a comma-separated string or a list; None: all).

    Returns
    -------
    int
        1 if any claim is violated, else 0.
    """
    only = claim_ids(",".join(only) if isinstance(only, (list, tuple)) else only)
    prepare_output_dir(out, "--out")  # before any computation
    check_output_names(out, report.FILES)
    runner = None
    if impl is not None:
        from .implementations import load_runner
        runner = load_runner(impl)
    start = time.perf_counter()
    progress = Progress(claims.steps(quick, only, runner is not None), "verify")
    results, ctx = claims.run_all(quick=quick, progress=progress, only=only, impl=runner)
    progress.close()
    meta = {"quick": bool(quick), "seconds": time.perf_counter() - start, "implementation": ctx.runner.describe()}
    print(f"implementation under test: {ctx.runner.describe()}\n")
    print(report.table(results))
    paths = report.write_all(out, results, ctx, meta)
    note = report.closing_note(results)
    if note:
        print("\n" + note)
    print("\nwrote " + ", ".join(paths))
    violated = [c.id for c, r, _ in results if r.status == VIOLATED]
    if violated:
        print(f"VIOLATED: {', '.join(violated)} (counterexamples in {os.path.join(out, 'report.md')})")
        return 1
    return 0
