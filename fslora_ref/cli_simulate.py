"""``fslora simulate``: FSLoRA and the baselines on one synthetic federated problem.

Writes ``history.json`` (strict JSON), ``simulate.png`` (loss vs round, loss vs uploaded
floats) and one data-only checkpoint per algorithm into ``--out``; ``--resume`` continues an
interrupted run (only the very same run: every differing setting is named).
"""
from __future__ import annotations

import os
import sys

import numpy as np

from .algorithms import ALGORITHMS, get_algorithm
from .config import BUDGET_DISTRIBUTIONS, FedConfig, budgets_from_ratios, draw_budgets
from .federation import checkpoint_path, find_checkpoint, load_checkpoint, problem_identity
from .federation import run as run_federated
from .outputs import check_output_names, prepare_output_dir, write_figure, write_json
from .problems import FAMILIES, make_problem
from .progress import Progress
from .validation import (MAX_CLIENTS, MAX_DIM, MAX_LOCAL_STEPS, MAX_RANK, MAX_ROUNDS, check_fraction, check_int,
                         check_positive_float)

DEFAULTS = dict(family="least_squares", clients=20, rank=16, ratios="0.125,0.25,0.5,0.75", local_steps=5, lr=0.01,
                rounds=100, seed=0, m=48, n=32, batch_size=16)


def configure_parser(p):
    d = DEFAULTS
    p.add_argument("--family", choices=sorted(FAMILIES), default=d["family"], help="client problem family")
    p.add_argument("--clients", type=int, default=d["clients"], help="number of clients N")
    p.add_argument("--rank", type=int, default=d["rank"], help="global LoRA rank r")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ratios", default=d["ratios"],
                   help="comma-separated k_i/r ratios cycled over clients (default: the paper's)")
    g.add_argument("--budgets", help="comma-separated k_i, one per client")
    g.add_argument("--budget-distribution", choices=BUDGET_DISTRIBUTIONS,
                   help="draw k_i from this distribution over [--r-min, --r-max]")
    p.add_argument("--r-min", type=int, default=None, help="smallest k_i for --budget-distribution (default 1)")
    p.add_argument("--r-max", type=int, default=None, help="largest k_i for --budget-distribution (default --rank)")
    p.add_argument("--local-steps", "-H", type=int, default=d["local_steps"], help="local steps H")
    p.add_argument("--lr", type=float, default=d["lr"], help="client step size gamma")
    p.add_argument("--rounds", "-T", type=int, default=d["rounds"], help="rounds T")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="client minibatch size (0: full batch)")
    p.add_argument("--m", type=int, default=d["m"], help="input dimension of the adapted weight")
    p.add_argument("--n", type=int, default=d["n"], help="output dimension (classes for logistic)")
    p.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated subset of " + ",".join(ALGORITHMS))
    p.add_argument("--client-optimizer", choices=("sgd", "adamw"), default="sgd")
    p.add_argument("--client-fraction", type=float, default=1.0, help="fraction of clients sampled per round")
    p.add_argument("--server-optimizer", choices=("none", "sgd", "adam"), default="none")
    p.add_argument("--server-lr", type=float, default=None, help="server step size for --server-optimizer (default 1)")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--out", default="runs/simulate", help="output directory")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --out (checkpoint-<algorithm>.npz; data only)")


def _list(text, kind, option):
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated {'integers' if kind is int else 'numbers'}, "
                         f"got {text!r}") from None


def algorithm_names(text) -> list:
    """The --algorithms list: known names, each once, at least one."""
    names = [a.strip() for a in text.split(",") if a.strip()]
    if not names:
        raise ValueError(f"--algorithms must name at least one of {','.join(ALGORITHMS)}, got {text!r}")
    unknown = [a for a in names if a not in ALGORITHMS]
    if unknown:
        raise ValueError(f"--algorithms: unknown {unknown}; choose from {','.join(ALGORITHMS)}")
    twice = sorted({a for a in names if names.count(a) > 1})
    if twice:
        raise ValueError(f"--algorithms lists {', '.join(twice)} more than once")
    return names


def check_args(args) -> None:
    """One-line errors naming the option and its range, before anything is built."""
    check_int("--clients", args.clients, low=1, high=MAX_CLIENTS)
    check_int("--rank", args.rank, low=1, high=MAX_RANK)
    check_int("--local-steps", args.local_steps, low=1, high=MAX_LOCAL_STEPS)
    check_positive_float("--lr", args.lr)
    check_int("--rounds", args.rounds, low=0, high=MAX_ROUNDS)
    check_int("--batch-size", args.batch_size, low=0)
    check_int("--m", args.m, low=1, high=MAX_DIM)
    check_int("--n", args.n, low=1, high=MAX_DIM)
    check_fraction("--client-fraction", args.client_fraction)
    check_int("--seed", args.seed, low=0)
    if args.server_lr is not None:
        check_positive_float("--server-lr", args.server_lr)
        if args.server_optimizer == "none":
            raise ValueError("--server-lr only applies with --server-optimizer sgd or adam")
    if args.budget_distribution is None and (args.r_min is not None or args.r_max is not None):
        raise ValueError("--r-min/--r-max only apply with --budget-distribution (uniform, normal, heavy_tail_low)")


def client_budgets(args) -> list:
    """k_i per client from --budgets, --budget-distribution or --ratios."""
    if args.budgets is not None:
        budgets = _list(args.budgets, int, "--budgets")
        if len(budgets) != args.clients:
            raise ValueError(f"--budgets must list {args.clients} values (one per client), got {len(budgets)}")
        for i, k in enumerate(budgets):
            check_int(f"--budgets[{i}]", k, low=1, high=args.rank)
        return budgets
    if args.budget_distribution:
        r_min = check_int("--r-min", 1 if args.r_min is None else args.r_min, low=1, high=args.rank)
        r_max = check_int("--r-max", args.rank if args.r_max is None else args.r_max, low=r_min, high=args.rank)
        return draw_budgets(args.clients, r_min, r_max, args.budget_distribution, args.seed)
    ratios = _list(args.ratios, float, "--ratios")
    if not ratios or not all(0 < x <= 1 for x in ratios):
        raise ValueError(f"--ratios must be comma-separated numbers in (0, 1], got {args.ratios!r}")
    return budgets_from_ratios(args.rank, ratios, args.clients)


def build(args):
    """(problem, config, algorithm names) from the parsed options."""
    check_args(args)
    names = algorithm_names(args.algorithms)
    budgets = client_budgets(args)
    dims = {"m": args.m, "n_classes": args.n} if args.family == "logistic" else {"m": args.m, "n": args.n}
    problem = make_problem(args.family, n_clients=args.clients, seed=args.seed,
                           batch_size=args.batch_size or None, **dims)
    config = FedConfig(rank=args.rank, budgets=budgets, local_steps=args.local_steps, lr=args.lr, rounds=args.rounds,
                       seed=args.seed, client_optimizer=args.client_optimizer, client_fraction=args.client_fraction,
                       server_optimizer=args.server_optimizer,
                       server_lr=1.0 if args.server_lr is None else args.server_lr)
    return problem, config, names


def plan_resume(out, names, problem, config, identity, resume: bool, announce: bool = True) -> dict:
    """{name: (checkpoint path, resume it?, rounds left)}; every checkpoint is read and checked
    before any algorithm runs, and a missing one is announced (unless ``announce`` is False: a
    check whose run, elsewhere, will announce it)."""
    plan = {}
    for name in names:
        found = find_checkpoint(out, name) if resume else None
        if resume and found is None and announce:
            print(f"fslora simulate: --resume: no checkpoint for {name} in {out}; starting it fresh", file=sys.stderr)
        done = 0
        if found:
            done = load_checkpoint(found, name, config, identity=identity, layer_shapes=problem.layer_shapes)[2]
        plan[name] = (checkpoint_path(out, name), found is not None, config.rounds - done)
    return plan


def run_identity(args, problem) -> dict:
    """What a checkpoint of this run must match besides the config: the problem's own identity
    (:func:`fslora_ref.federation.problem_identity`) and the options that define it."""
    return dict(problem_identity(problem), m=args.m, n=args.n)


def output_names(args) -> list:
    """The files a run writes into --out (checked up front: a directory named history.json would
    otherwise fail only after the whole run)."""
    return ["history.json", "simulate.png"] + [os.path.basename(checkpoint_path(args.out, a))
                                               for a in algorithm_names(args.algorithms)]


def run(args) -> int:
    check_args(args)
    prepare_output_dir(args.out, "--out")  # before any computation
    check_output_names(args.out, output_names(args))
    problem, config, names = build(args)
    write_results(args, problem, config, run_all(args, problem, config, names))
    return 0


def run_all(args, problem, config, names, round_fn=None) -> dict:
    """{name: History} for each algorithm in ``names``, checkpointed in ``args.out`` (continued
    from there with ``args.resume``, only for the very same run); round_fn as in
    :func:`fslora_ref.federation.run` (the Flower app runs the same job through it)."""
    identity = run_identity(args, problem)
    plan = plan_resume(args.out, names, problem, config, identity, args.resume)
    left = sum(n for _, _, n in plan.values())
    bar = Progress(len(names) * config.rounds, "simulate", done=len(names) * config.rounds - left)
    histories = {}
    for name, (ckpt, resume, _) in plan.items():
        def tick(t, row, name=name):
            bar.update(1, f"{name} round {t + 1} loss {row['loss']:.4g}")
        histories[name] = run_federated(get_algorithm(name), problem, config, checkpoint=ckpt, resume=resume,
                                        on_round=tick, identity=identity, round_fn=round_fn)
    bar.close()
    return histories


def write_results(args, problem, config, histories) -> None:
    """history.json, the summary table (printed) and simulate.png in ``args.out``."""
    result = {"config": dict(config.to_json(), family=args.family, m=args.m, n=args.n,
                             batch_size=args.batch_size, client_sizes=problem.client_sizes),
              "algorithms": {name: h.to_json() for name, h in histories.items()}}
    history_path = os.path.join(args.out, "history.json")
    write_json(history_path, result)
    print(summary_table(histories))
    png = os.path.join(args.out, "simulate.png")
    why_not = plot_histories(histories, png, title=f"{args.family}: N={config.n_clients}, r={config.rank}, "
                                                   f"budgets {sorted(set(config.budgets))}, H={config.local_steps}")
    print(f"wrote {history_path} and {png}" if why_not is None else f"wrote {history_path} ({why_not})")


def summary_table(histories) -> str:
    head = f"{'algorithm':<10} {'final loss':>11} {'best loss':>11} {'uploaded floats':>16} {'downloaded':>12} {'peak client mem (floats)':>26}"
    lines = [head, "-" * len(head)]
    for name, h in histories.items():
        mem = h.peak_client_memory
        lines.append(f"{name:<10} {h['loss'][-1]:>11.5g} {min(h['loss']):>11.5g} {h['upload_floats'][-1]:>16,} "
                     f"{h['download_floats'][-1]:>12,} {f'{min(mem):,}..{max(mem):,}':>26}")
    return "\n".join(lines)


def plot_histories(histories, path, title="") -> str | None:
    """Loss vs round and vs uploaded floats, written atomically to ``path``. Returns None, or
    why no plot was written (never raises for extreme values: a loss range beyond what a log
    axis can draw is plotted as log10 on a linear axis)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib missing: no PNG; pip install 'fslora[plot]'"
    losses = {name: np.asarray(h["loss"], dtype=float) for name, h in histories.items()}
    every = np.concatenate(list(losses.values()))
    positive = every[np.isfinite(every) & (every > 0)]
    as_log10 = positive.size > 0 and (positive.max() > 1e100 or positive.min() < 1e-100)
    label = "log10 of global loss f(X^t)" if as_log10 else "global loss f(X^t)"
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    try:
        for name, h in histories.items():
            y = losses[name]
            if as_log10:
                with np.errstate(all="ignore"):
                    y = np.log10(np.where(y > 0, y, np.nan))
            ax1.plot(range(len(y)), y, label=name)
            ax2.plot(h["upload_floats"], y, label=name)
        scale = "linear" if as_log10 else "log"
        ax1.set(xlabel="round t", ylabel=label, title="loss vs round", yscale=scale)
        ax2.set(xlabel="cumulative uploaded floats (all clients)", ylabel=label, title="loss vs communication",
                yscale=scale)
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(title)
        fig.tight_layout()
        write_figure(path, fig, dpi=110)
    except (OverflowError, ValueError, RuntimeError) as exc:  # matplotlib's limits, not the run's
        return f"no PNG: matplotlib could not draw these values ({type(exc).__name__}: {exc})"
    finally:
        plt.close(fig)
    return None
