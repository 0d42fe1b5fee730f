"""``fslora simulate``: FSLoRA and the baselines on one synthetic federated problem.

Writes ``history.json`` (strict JSON), ``simulate.png`` (loss vs round, loss vs uploaded
floats) and one data-only checkpoint per algorithm into ``--out``; ``--resume`` continues an
interrupted run (only the very same run: every differing setting is named). The options are
the fields of :class:`fslora_ref.jobs.SimulateJob`; ``--config job.toml`` reads them from a
file, and options given on the command line override the file.
"""
from __future__ import annotations

from fslora_ref import simulate
from fslora_ref.algorithms import ALGORITHMS
from fslora_ref.config import BUDGET_DISTRIBUTIONS
from fslora_ref.jobs import SimulateJob
from fslora_ref.problems import FAMILIES
from fslora_ref.validation import MAX_CLIENTS, MAX_DIM, MAX_LOCAL_STEPS, MAX_RANK, MAX_ROUNDS

from .options import add_config_option, job_values, record_given
from .parser import integer_in

HELP = "run FSLoRA and the baselines on a synthetic federated problem"
DEFAULTS = {k: v for k, v in SimulateJob().to_dict().items()
            if k in ("family", "clients", "rank", "ratios", "local_steps", "lr", "rounds", "seed", "m", "n",
                     "batch_size")}


def configure_parser(p):
    d = SimulateJob()
    p.add_argument("--family", choices=sorted(FAMILIES), default=d.family, help="client problem family")
    p.add_argument("--clients", type=integer_in(1, MAX_CLIENTS), default=d.clients, help="number of clients N")
    p.add_argument("--rank", type=integer_in(1, MAX_RANK), default=d.rank, help="global LoRA rank r")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--ratios", default=d.ratios,
                   help="comma-separated k_i/r ratios cycled over clients (the paper's)")
    g.add_argument("--budgets", help="comma-separated k_i, one per client")
    g.add_argument("--budget-distribution", choices=BUDGET_DISTRIBUTIONS,
                   help="draw k_i from this distribution over [--r-min, --r-max]")
    p.add_argument("--r-min", type=integer_in(1, "--rank"), default=None, help="smallest k_i for --budget-distribution (default 1)")
    p.add_argument("--r-max", type=integer_in("--r-min", "--rank"), default=None, help="largest k_i for --budget-distribution (default --rank)")
    p.add_argument("--local-steps", "-H", type=integer_in(1, MAX_LOCAL_STEPS), default=d.local_steps, help="local steps H")
    p.add_argument("--lr", type=float, default=d.lr, help="client step size gamma")
    p.add_argument("--rounds", "-T", type=integer_in(0, MAX_ROUNDS), default=d.rounds, help="rounds T")
    p.add_argument("--batch-size", type=integer_in(0), default=d.batch_size, help="client minibatch size (0: full batch)")
    p.add_argument("--m", type=integer_in(1, MAX_DIM), default=d.m, help="input dimension of the adapted weight")
    p.add_argument("--n", type=integer_in(1, MAX_DIM), default=d.n, help="output dimension (classes for logistic)")
    p.add_argument("--algorithms", default=d.algorithms, help="comma-separated subset of " + ",".join(ALGORITHMS))
    p.add_argument("--client-optimizer", choices=("sgd", "adamw"), default=d.client_optimizer,
                   help="the clients' optimiser (sgd is Algorithm 1's)")
    p.add_argument("--client-fraction", type=float, default=d.client_fraction,
                   help="fraction of clients sampled per round")
    p.add_argument("--server-optimizer", choices=("none", "sgd", "adam"), default=d.server_optimizer,
                   help="the server's step on the averaged update (none: apply it as is, Algorithm 1)")
    p.add_argument("--server-lr", type=float, default=None, help="server step size for --server-optimizer (default 1)")
    p.add_argument("--seed", type=integer_in(0), default=d.seed,
                   help="the run's seed (data, client sampling, sketches: same seed, bit-identical results)")
    for name, cls in ALGORITHMS.items():  # each baseline's variants (docs/spec.md section 5)
        for option, values in cls.OPTIONS.items():
            p.add_argument(f"--{name}-{option.replace('_', '-')}", dest=f"{name}_{option}", choices=values,
                           default=None, help=f"{name}'s {option} rule (default {values[0]}: the FSLoRA paper's)")
    p.set_defaults(variants=None)  # a --config file may give them as a [variants.<algorithm>] table
    add_config_option(p, "simulate")
    p.add_argument("--out", default="runs/simulate", help="output directory")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoints in --out (checkpoint-<algorithm>.npz; data only)")
    record_given(p)


def job_from_args(args) -> SimulateJob:
    """The job the parsed options describe (``--config`` file values under explicit options)."""
    values, _ = job_values(args, SimulateJob)
    variants = {name: dict(opts) for name, opts in (values.get("variants") or {}).items()}
    for name, cls in ALGORITHMS.items():  # a --<algorithm>-<option> flag overrides the file
        for option in cls.OPTIONS:
            value = getattr(args, f"{name}_{option}", None)
            if value is not None:
                variants.setdefault(name, {})[option] = value
    return SimulateJob.from_dict(dict(values, variants=variants))


def run(args) -> int:
    simulate.run_simulate(job_from_args(args), args.out, resume=args.resume)
    return 0


# The library calls on parsed options (tests and scripts that hold an argparse Namespace).

def build(args):
    """:func:`fslora_ref.simulate.build` of the job ``args`` describes."""
    return simulate.build(job_from_args(args))


def run_identity(args, problem) -> dict:
    return simulate.run_identity(job_from_args(args), problem)


def run_all(args, problem, config, names, round_fn=None) -> dict:
    return simulate.run_all(job_from_args(args), problem, config, names, args.out, resume=args.resume,
                            round_fn=round_fn)
