"""Library side of ``fslora bench``: client-side cost of FSLoRA's forms and budgets, measured side by side.

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


def time_rounds(variants: dict, problem, repeats: int, bar) -> dict:
    """Median seconds per round for each (algorithm, config) in ``variants``, interleaved.

    Parameters
    ----------
    variants : dict
        ``{name: (algorithm, FedConfig)}``.
    problem : Problem
        The problem every variant runs on.
    repeats : int
        Timed rounds per variant (after one discarded warm-up round).
    bar : Progress
        Advanced once per round.

    Returns
    -------
    dict
        ``{name: median seconds per round}``.
    """
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


def check_setting(clients: int, m: int, n: int, rank: int, k: int, local_steps: int, batch_size: int, repeats: int,
                  json_path: str | None) -> None:
    """One-line errors naming the option, and the --json path checked, before any computation.

    Parameters
    ----------
    clients, m, n, rank, k, local_steps, batch_size, repeats : int
        As :func:`run_bench`.
    json_path : str or None
        As :func:`run_bench`.
    """
    check_int("--clients", clients, low=1, high=MAX_CLIENTS)
    check_int("--m", m, low=1, high=MAX_DIM)
    check_int("--n", n, low=1, high=MAX_DIM)
    check_int("--rank", rank, low=1, high=MAX_RANK)
    check_int("--k", k, low=1, high=rank)
    check_int("--local-steps", local_steps, low=1, high=MAX_LOCAL_STEPS)
    check_int("--batch-size", batch_size, low=1, high=MAX_BATCH)
    check_int("--repeats", repeats, low=1, high=MAX_REPEATS)
    if json_path is not None:
        check_output_file(json_path, "--json")


def run_bench(*, clients: int = 20, m: int = 512, n: int = 512, rank: int = 64, k: int = 8, local_steps: int = 10,
              batch_size: int = 32, repeats: int = 5, json_path: str | None = None) -> dict:
    """Time (a) submatrix vs masked form at budget k and (b) budget k vs k = r, print the figures
    and return them (also written to ``json_path`` if given).

    Parameters
    ----------
    clients, m, n, rank, k, local_steps, batch_size : int
        N, the adapted weight's input and output dimensions, r, the client budget, H and the minibatch size.
    repeats : int
        Timed rounds per variant (the median is reported).
    json_path : str or None
        Where to write the figures as JSON.

    Returns
    -------
    dict
        ``submatrix_vs_masked_speedup``, ``k<k>_over_k<r>_time_ratio``, ``seconds_per_round``, ``setting``.
    """
    check_setting(clients, m, n, rank, k, local_steps, batch_size, repeats, json_path)
    problem = least_squares(n_clients=clients, m=m, n=n, target_rank=8,
                            mean_size=max(256, batch_size), size_spread=0.0, batch_size=batch_size, seed=0)
    fslora = get_algorithm("fslora")
    base = dict(rank=rank, local_steps=local_steps, lr=1e-4, rounds=1, seed=0)
    small = FedConfig(budgets=[k] * clients, **base)
    variants = {"submatrix_k": (fslora, small),
                "masked_k": (fslora, small.replace(form="masked")),
                "submatrix_r": (fslora, FedConfig(budgets=[rank] * clients, **base))}
    bar = Progress(len(variants) * (repeats + 1), "bench")
    t = time_rounds(variants, problem, repeats, bar)
    bar.close()
    result = {
        "submatrix_vs_masked_speedup": t["masked_k"] / t["submatrix_k"],
        f"k{k}_over_k{rank}_time_ratio": t["submatrix_k"] / t["submatrix_r"],  # k8_over_k64_... by default
        "seconds_per_round": t,
        "setting": {"clients": clients, "m": m, "n": n, "rank": rank, "k": k,
                    "local_steps": local_steps, "batch_size": batch_size, "repeats": repeats,
                    "numpy": np.__version__, "machine": platform.machine(), "cpus": os.cpu_count()},
    }
    print(f"setting: N={clients}, m={m}, n={n}, r={rank}, k={k}, H={local_steps}, "
          f"batch={batch_size}, median of {repeats} rounds")
    print(f"(a) round time  submatrix k={k}: {t['submatrix_k'] * 1e3:8.1f} ms   masked k={k}: "
          f"{t['masked_k'] * 1e3:8.1f} ms   speedup {result['submatrix_vs_masked_speedup']:.2f}x (target >= 4)")
    print(f"(b) round time  submatrix k={k}: {t['submatrix_k'] * 1e3:8.1f} ms   submatrix k={rank}: "
          f"{t['submatrix_r'] * 1e3:8.1f} ms   ratio {t['submatrix_k'] / t['submatrix_r']:.3f} (target <= 0.3)")
    if json_path:
        write_json(json_path, result)
        print(f"wrote {json_path}")
    return result
