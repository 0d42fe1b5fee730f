"""``fslora verify [--quick] [--impl MODULE:ATTR] [--out DIR] [--only ID,...]``: run the claims
registry, print the table, write report.md / report.json / plots (:func:`theory.verify.run_verify`).
Exit code 1 if any claim is violated, 2 on bad arguments (including an --impl that cannot be loaded)."""
from __future__ import annotations

import os

# The checks are many small dense linear-algebra calls; multithreaded BLAS makes them ~10x
# slower on a shared 2-core machine. Must be set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def configure_parser(p):
    p.add_argument("--quick", action="store_true", help="one Theorem 4.4 setting, shorter sweeps, fewer rounds "
                                                        "(about 40 s of CPU instead of about 125 s)")
    p.add_argument("--impl", metavar="MODULE:ATTR", default=None,
                   help="run the algorithm-level claims through this implementation (the `fslora crosscheck` target "
                        "syntax: a conformance-protocol object, or an fslora_ref Algorithm); default: the reference")
    p.add_argument("--out", default="runs/verify", help="output directory (default: runs/verify)")
    p.add_argument("--only", default=None, help="comma-separated claim ids to run (default: all)")


def run(args) -> int:
    from theory.verify import run_verify
    return run_verify(args.out, quick=args.quick, impl=args.impl, only=args.only)
