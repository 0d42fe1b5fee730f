"""``fslora bench``: client-side cost of FSLoRA's forms and budgets, measured side by side.

(a) per-round time, submatrix form vs full-size masked form (same iterates), and
(b) per-round time of the submatrix form at k = 8 vs k = 64,
at N = 20, m = n = 512, r = 64, H = 10 by default. Rounds are timed alternately and the
median of ``--repeats`` is reported, so background load affects both sides alike.
"""
from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np

from .algorithms import get_algorithm
from .config import FedConfig
from .federation import run_round
from .outputs import check_output_file, write_json
from .problems import least_squares
from .progress import Progress
from .validation import MAX_CLIENTS, MAX_DIM, MAX_LOCAL_STEPS, MAX_RANK, check_int

MAX_BATCH = 1 << 20     # samples per client step
MAX_REPEATS = 10_000    # timed rounds per variant


def configure_parser(p):
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--dim", type=int, default=512, help="m = n of the adapted weight")
    p.add_argument("--rank", type=int, default=64)
    p.add_argument("--k", type=int, default=8, help="client budget for (a) and the small side of (b)")
    p.add_argument("--local-steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per variant (median reported)")
    p.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    p.add_argument("--bridge", action="store_true", help="benchmark the LLM bridge client instead (needs torch)")


def time_rounds(variants: dict, problem, repeats: int, bar) -> dict:
    """Median seconds per round for each (algorithm, config) in ``variants``, interleaved."""
    times = {name: [] for name in variants}
    states = {name: algo.init(problem, cfg) for name, (algo, cfg) in variants.items()}
    for rep in range(repeats + 1):  # the first pass warms caches and is discarded
        for name, (algo, cfg) in variants.items():
            start = time.perf_counter()
            run_round(algo, states[name], problem, cfg, rep)
            if rep:
                times[name].append(time.perf_counter() - start)
            bar.update(1, name)
    return {name: statistics.median(t) for name, t in times.items()}


def check_args(args) -> None:
    """One-line errors naming the option, and the --json path checked, before any computation."""
    check_int("--clients", args.clients, low=1, high=MAX_CLIENTS)
    check_int("--dim", args.dim, low=1, high=MAX_DIM)
    check_int("--rank", args.rank, low=1, high=MAX_RANK)
    check_int("--k", args.k, low=1, high=args.rank)
    check_int("--local-steps", args.local_steps, low=1, high=MAX_LOCAL_STEPS)
    check_int("--batch-size", args.batch_size, low=1, high=MAX_BATCH)
    check_int("--repeats", args.repeats, low=1, high=MAX_REPEATS)
    if args.json_path is not None:
        check_output_file(args.json_path, "--json")


def run(args) -> int:
    check_args(args)
    problem = least_squares(n_clients=args.clients, m=args.dim, n=args.dim, target_rank=8,
                            mean_size=max(256, args.batch_size), size_spread=0.0, batch_size=args.batch_size, seed=0)
    fslora = get_algorithm("fslora")
    base = dict(rank=args.rank, local_steps=args.local_steps, lr=1e-4, rounds=1, seed=0)
    small = FedConfig(budgets=[args.k] * args.clients, **base)
    variants = {"submatrix_k": (fslora, small),
                "masked_k": (fslora, small.replace(form="masked")),
                "submatrix_r": (fslora, FedConfig(budgets=[args.rank] * args.clients, **base))}
    bar = Progress(len(variants) * (args.repeats + 1), "bench")
    t = time_rounds(variants, problem, args.repeats, bar)
    bar.close()
    result = {
        "submatrix_vs_masked_speedup": t["masked_k"] / t["submatrix_k"],
        f"k{args.k}_over_k{args.rank}_time_ratio": t["submatrix_k"] / t["submatrix_r"],  # k8_over_k64_... by default
        "seconds_per_round": t,
        "setting": {"clients": args.clients, "m": args.dim, "n": args.dim, "rank": args.rank, "k": args.k,
                    "local_steps": args.local_steps, "batch_size": args.batch_size, "repeats": args.repeats,
                    "numpy": np.__version__, "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    print(f"setting: N={args.clients}, m=n={args.dim}, r={args.rank}, k={args.k}, H={args.local_steps}, "
          f"batch={args.batch_size}, median of {args.repeats} rounds")
    print(f"(a) round time  submatrix k={args.k}: {t['submatrix_k'] * 1e3:8.1f} ms   masked k={args.k}: "
          f"{t['masked_k'] * 1e3:8.1f} ms   speedup {result['submatrix_vs_masked_speedup']:.2f}x (target >= 4)")
    print(f"(b) round time  submatrix k={args.k}: {t['submatrix_k'] * 1e3:8.1f} ms   submatrix k={args.rank}: "
          f"{t['submatrix_r'] * 1e3:8.1f} ms   ratio {t['submatrix_k'] / t['submatrix_r']:.3f} (target <= 0.3)")
    if args.json_path:
        write_json(args.json_path, result)
        print(f"wrote {args.json_path}")
    return 0
