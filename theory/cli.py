"""``fslora verify [--quick] [--impl MODULE:ATTR] [--out DIR] [--only ID,...]``: run the claims
registry, print the table, write report.md / report.json / plots. Exit code 1 if any claim is
violated, 2 on bad arguments (including an --impl that cannot be loaded)."""
from __future__ import annotations

import os

# The checks are many small dense linear-algebra calls; multithreaded BLAS makes them ~10x
# slower on a shared 2-core machine. Must be set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

from fslora_ref.outputs import check_output_names, prepare_output_dir  # noqa: E402
from fslora_ref.progress import Progress  # noqa: E402

from . import claims, report  # noqa: E402
from .result import VIOLATED  # noqa: E402


def configure_parser(p):
    p.add_argument("--quick", action="store_true", help="one Theorem 4.4 setting, shorter sweeps, fewer rounds "
                                                        "(about 11 s of CPU instead of about 45 s)")
    p.add_argument("--impl", metavar="MODULE:ATTR", default=None,
                   help="run the algorithm-level claims through this implementation (the `fslora crosscheck` target "
                        "syntax: a conformance-protocol object, or an fslora_ref Algorithm); default: the reference")
    p.add_argument("--out", default="runs/verify", help="output directory (default: runs/verify)")
    p.add_argument("--only", default=None, help="comma-separated claim ids to run (default: all)")


def run(args) -> int:
    prepare_output_dir(args.out, "--out")  # before any computation
    check_output_names(args.out, report.FILES)
    only = None
    if args.only is not None:
        only = [s.strip() for s in args.only.split(",") if s.strip()]
        known = {c.id for c in claims.CLAIMS}
        unknown = [s for s in only if s not in known]
        if not only:
            raise ValueError(f"--only must name at least one claim id; known: {sorted(known)}")
        if unknown:
            raise ValueError(f"--only: unknown claim ids {unknown}; known: {sorted(known)}")
    impl = None
    if args.impl is not None:
        from .implementations import load_runner
        impl = load_runner(args.impl)
    start = time.perf_counter()
    progress = Progress(claims.steps(args.quick, only, impl is not None), "verify")
    results, ctx = claims.run_all(quick=args.quick, progress=progress, only=only, impl=impl)
    progress.close()
    meta = {"quick": bool(args.quick), "seconds": time.perf_counter() - start, "implementation": ctx.runner.describe()}
    print(f"implementation under test: {ctx.runner.describe()}\n")
    print(report.table(results))
    paths = report.write_all(args.out, results, ctx, meta)
    note = report.closing_note(results)
    if note:
        print("\n" + note)
    print("\nwrote " + ", ".join(paths))
    violated = [c.id for c, r, _ in results if r.status == VIOLATED]
    if violated:
        print(f"VIOLATED: {', '.join(violated)} (counterexamples in {os.path.join(args.out, 'report.md')})")
        return 1
    return 0
