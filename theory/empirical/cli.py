"""``fslora claims [--quick] [--only ID,...] [--family F] [--seeds N] [--out DIR]``: the paper's
empirical claims (spec section 6) on the NumPy families, each as paired comparisons over seeds
with an effect size, simultaneous confidence intervals and a status. ``--llm`` runs claim 1 on
SmolLM2 instead (``llm_bridge.claims``; fslora_cli dispatches there).

Exit code 1 if any (claim, family) is ``not supported``, 2 on bad arguments.
"""
from __future__ import annotations

import os

# Many small dense products: multithreaded BLAS only slows them on a shared machine. Must be set
# before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import time  # noqa: E402

from fslora_ref.outputs import check_output_names, prepare_output_dir  # noqa: E402
from fslora_ref.progress import Progress  # noqa: E402
from fslora_ref.validation import MAX_CLIENTS, MAX_ROUNDS, check_int, check_threads  # noqa: E402

from . import claims as claims_mod  # noqa: E402
from . import engine, report  # noqa: E402
from .settings import FAMILIES, SEEDS  # noqa: E402
from .stats import NOT_SUPPORTED  # noqa: E402
from .store import RunStore  # noqa: E402


def configure_parser(p):
    p.add_argument("--llm", action="store_true", help="run claim 1 on SmolLM2 through the LLM bridge (a long run)")
    p.add_argument("--quick", action="store_true",
                   help=f"N=10, T=30, {SEEDS['quick']} seeds (about 30 s of CPU) instead of N=20, T=100, {SEEDS['full']} seeds")
    p.add_argument("--only", default=None, help="comma-separated claim ids, e.g. claim1,claim4 or 1,4 (default: all five)")
    p.add_argument("--family", choices=FAMILIES, default=None, help="one problem family (default: all three)")
    p.add_argument("--seeds", type=int, default=None, help=f"seeds 0..N-1 (default {SEEDS['full']}, --quick {SEEDS['quick']})")
    p.add_argument("--rounds", type=int, default=None, help="override T (rounds)")
    p.add_argument("--clients", type=int, default=None, help="override N (clients)")
    p.add_argument("--margin", type=float, default=claims_mod.DEFAULT_MARGIN,
                   help="relative equivalence / non-inferiority margin of claims 4 and 5 (default 0.10)")
    p.add_argument("--alpha", type=float, default=0.05, help="one-sided level per direction (Bonferroni within a claim)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)")
    p.add_argument("--out", default="runs/claims", help="output directory (default: runs/claims)")
    p.add_argument("--resume", action="store_true", help="reuse the finished runs in <out>/runs.json")


MAX_SEEDS = 1_000


def select_claims(only, margin: float) -> list:
    """The claims named by --only ('claim1' or '1'), in registry order."""
    claims = claims_mod.build_claims(margin)
    if only is None:
        return claims
    tokens = [t.strip() for t in only.split(",") if t.strip()]
    if not tokens:  # an empty --only is a mistake, not "every claim"
        raise ValueError(f"--only must name at least one claim id, got {only!r}; known: {[c.id for c in claims]}")
    wanted = []
    for token in tokens:
        cid = token if token.startswith("claim") else f"claim{token}"
        if cid not in {c.id for c in claims}:
            raise ValueError(f"--only: unknown claim id {token!r}; known: {[c.id for c in claims]}")
        wanted.append(cid)
    return [c for c in claims if c.id in wanted]


def validate(args):
    seeds = args.seeds if args.seeds is not None else SEEDS["quick" if args.quick else "full"]
    check_int("--seeds", seeds, low=2, high=MAX_SEEDS)
    check_threads("--jobs", args.jobs)   # and never more workers than units of work (engine.run_claims)
    if args.rounds is not None:
        check_int("--rounds", args.rounds, low=1, high=MAX_ROUNDS)
    if args.clients is not None:
        check_int("--clients", args.clients, low=2, high=MAX_CLIENTS)
    if not 0.0 < args.margin < 1.0:
        raise ValueError(f"--margin must be in (0, 1), got {args.margin}")
    if not 0.0 < args.alpha < 0.5:
        raise ValueError(f"--alpha must be in (0, 0.5), got {args.alpha}")
    return list(range(seeds))


def run(args, algorithms=None) -> int:
    """algorithms: optional name -> Algorithm class (tests swap in a broken FSLoRA)."""
    seeds = validate(args)
    claims = select_claims(args.only, args.margin)
    families = [args.family] if args.family else list(FAMILIES)
    prepare_output_dir(args.out)
    check_output_names(args.out, ["report.json", "report.md", "runs.json"] + [f"{c.id}.png" for c in claims])
    store = RunStore(os.path.join(args.out, "runs.json"), resume=args.resume)
    arms = engine.needed_arms(claims)
    start = time.perf_counter()
    progress = Progress(len(families) * len(seeds) * len(arms), "claims")
    entries, runs, settings = engine.run_claims(claims, families, seeds, quick=args.quick, store=store, jobs=args.jobs,
                                                algorithms=algorithms, progress=progress, rounds=args.rounds,
                                                clients=args.clients, alpha=args.alpha)
    progress.close()
    meta = {"mode": "quick" if args.quick else "full", "seeds": seeds, "families": families, "alpha": args.alpha,
            "margin": args.margin, "jobs": args.jobs, "seconds": time.perf_counter() - start,
            "settings": {f: s.to_json() for f, s in settings.items()}}
    print(report.table(entries))
    paths = report.write_all(args.out, entries, meta, claims, runs)
    print(f"\n{meta['seconds']:.1f} s; wrote " + ", ".join(paths + [store.path]))
    bad = [e["id"] for e in entries if e["status"] == NOT_SUPPORTED]
    if bad:
        print(f"not supported: {', '.join(bad)} (details in {os.path.join(args.out, 'report.md')})")
        return 1
    return 0
