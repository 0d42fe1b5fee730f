"""``fslora simulate``: FSLoRA and the baselines on one synthetic federated problem.

Writes ``history.json``, ``simulate.png`` (loss vs round, loss vs uploaded floats) and
per-algorithm checkpoints into ``--out``; ``--resume`` continues an interrupted run.
"""
from __future__ import annotations

import json
import os

from .algorithms import ALGORITHMS, get_algorithm
from .config import BUDGET_DISTRIBUTIONS, FedConfig, budgets_from_ratios, draw_budgets
from .federation import atomic_write_bytes
from .federation import run as run_federated
from .problems import FAMILIES, make_problem
from .progress import Progress

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
    p.add_argument("--r-min", type=int, default=1)
    p.add_argument("--r-max", type=int, default=None, help="default: --rank")
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
    p.add_argument("--server-lr", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--out", default="runs/simulate", help="output directory")
    p.add_argument("--resume", action="store_true", help="continue from checkpoints in --out")


def _int_list(text, name):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from None


def build(args):
    if args.clients < 1:
        raise ValueError(f"--clients must be >= 1, got {args.clients}")
    if args.budgets:
        budgets = _int_list(args.budgets, "--budgets")
        if len(budgets) != args.clients:
            raise ValueError(f"--budgets must list {args.clients} values (one per client), got {len(budgets)}")
    elif args.budget_distribution:
        budgets = draw_budgets(args.clients, args.r_min, args.r_max or args.rank, args.budget_distribution, args.seed)
    else:
        try:
            ratios = [float(v) for v in args.ratios.split(",")]
        except ValueError:
            raise ValueError(f"--ratios must be comma-separated numbers in (0, 1], got {args.ratios!r}") from None
        budgets = budgets_from_ratios(args.rank, ratios, args.clients)
    dims = {"m": args.m, "n": args.n} if args.family == "least_squares" else (
        {"m": args.m, "n_classes": args.n} if args.family == "logistic" else {"m": args.m, "n": args.n})
    problem = make_problem(args.family, n_clients=args.clients, seed=args.seed,
                           batch_size=args.batch_size or None, **dims)
    config = FedConfig(rank=args.rank, budgets=budgets, local_steps=args.local_steps, lr=args.lr, rounds=args.rounds,
                       seed=args.seed, client_optimizer=args.client_optimizer, client_fraction=args.client_fraction,
                       server_optimizer=args.server_optimizer, server_lr=args.server_lr)
    names = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    for a in names:
        get_algorithm(a)
    return problem, config, names


def run(args) -> int:
    problem, config, names = build(args)
    os.makedirs(args.out, exist_ok=True)
    histories = run_all(names, problem, config, args.out, args.resume)
    write_results(args, problem, config, histories)
    return 0


def run_all(names, problem, config, out, resume, round_fn=None) -> dict:
    """{name: History} for each algorithm in ``names``, checkpointed in ``out``; round_fn as in
    :func:`fslora_ref.federation.run` (the Flower app runs the same job through it)."""
    histories = {}
    bar = Progress(len(names) * config.rounds, "simulate")
    for name in names:
        ckpt = os.path.join(out, f"checkpoint-{name}.pkl")
        histories[name] = run_algorithm(name, problem, config, ckpt, resume, bar, round_fn)
    bar.close()
    return histories


def write_results(args, problem, config, histories) -> None:
    """history.json, the summary table (printed) and simulate.png in ``args.out``."""
    result = {"config": dict(config.to_json(), family=args.family, m=args.m, n=args.n,
                             batch_size=args.batch_size, client_sizes=problem.client_sizes),
              "algorithms": {name: h.to_json() for name, h in histories.items()}}
    atomic_write_bytes(os.path.join(args.out, "history.json"), json.dumps(result, indent=1).encode())
    print(summary_table(histories))
    png = os.path.join(args.out, "simulate.png")
    if plot_histories(histories, png, title=f"{args.family}: N={config.n_clients}, r={config.rank}, "
                                            f"budgets {sorted(set(config.budgets))}, H={config.local_steps}"):
        print(f"wrote {os.path.join(args.out, 'history.json')} and {png}")
    else:
        print(f"wrote {os.path.join(args.out, 'history.json')} (matplotlib missing: no PNG; pip install 'fslora[plot]')")


def run_algorithm(name, problem, config, checkpoint, resume, bar, round_fn=None):
    def tick(t, row):
        bar.update(1, f"{name} round {t + 1} loss {row['loss']:.4g}")
    h = run_federated(get_algorithm(name), problem, config, checkpoint=checkpoint, resume=resume, on_round=tick,
                      round_fn=round_fn)
    if resume:  # rounds restored from the checkpoint were not ticked
        bar.update(config.rounds - (bar.count % config.rounds or config.rounds))
    return h


def summary_table(histories) -> str:
    head = f"{'algorithm':<10} {'final loss':>11} {'best loss':>11} {'uploaded floats':>16} {'downloaded':>12} {'peak client mem (floats)':>26}"
    lines = [head, "-" * len(head)]
    for name, h in histories.items():
        mem = h.peak_client_memory
        lines.append(f"{name:<10} {h['loss'][-1]:>11.5g} {min(h['loss']):>11.5g} {h['upload_floats'][-1]:>16,} "
                     f"{h['download_floats'][-1]:>12,} {f'{min(mem):,}..{max(mem):,}':>26}")
    return "\n".join(lines)


def plot_histories(histories, path, title="") -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, h in histories.items():
        ax1.plot(range(len(h["loss"])), h["loss"], label=name)
        ax2.plot(h["upload_floats"], h["loss"], label=name)
    ax1.set(xlabel="round t", ylabel="global loss f(X^t)", title="loss vs round", yscale="log")
    ax2.set(xlabel="cumulative uploaded floats (all clients)", ylabel="global loss f(X^t)",
            title="loss vs communication", yscale="log")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True
