"""``fslora bench --bridge``: the FSLoRA client on a real LM, rank-k copy vs masked full rank.

Measured side by side in one run, at k = r/8 by default:
  * client trainable state (LoRA parameters + gradients + AdamW state), counted on the tensors
    actually allocated after a step -> memory_ratio = submatrix / masked;
  * client step time, the two variants alternated, median over repeats -> step_time_ratio;
  * the whole client process's peak RSS, each variant in its own fresh subprocess (on CPU the
    frozen base model and activations dominate, so this ratio is expected near 1).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = ("submatrix", "masked")


def configure_parser(p):
    p.add_argument("--bridge", action="store_true", help="benchmark the LLM bridge client (this command)")
    p.add_argument("--tiny", action="store_true", help="use the tiny random Llama instead of SmolLM2")
    p.add_argument("--json", dest="json_path", help="also write the figures to this JSON file")
    p.add_argument("--rank", type=int, default=64, help="global rank r (default: the paper's 64)")
    p.add_argument("--k", type=int, default=None, help="client budget (default r/8)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="local steps per timed client update")
    p.add_argument("--repeats", type=int, default=7, help="timed client updates per variant (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--worker", choices=VARIANTS, help=argparse_suppress())


def argparse_suppress():
    import argparse
    return argparse.SUPPRESS


def setup(args):
    """(layers, task, {variant: (plan, config)}, element bytes) for one client of budget k."""
    from fslora_ref.algorithms import get_algorithm
    from fslora_ref.config import FedConfig

    from .data import FAMILIES, dirichlet_partition
    from .federated import ModelShapes
    from .finetune import setup_torch
    from .models import load_model
    from .peft_layers import LoraLayers, add_lora
    from .task import InstructionTask
    setup_torch(args.threads)
    model, tok = load_model("tiny" if args.tiny else "smollm2")
    layers = LoraLayers(add_lora(model, args.rank, 2.0 * args.rank, ["q_proj", "k_proj", "v_proj", "o_proj"]))
    k = args.k or max(1, args.rank // 8)
    if not 1 <= k <= args.rank:
        raise ValueError(f"--k must be in [1, {args.rank}] (the adapter's rank r), got {k}")
    task = InstructionTask(tok, dirichlet_partition(1, list(FAMILIES), 64, 1.0, 0), args.batch_size)
    config = FedConfig(rank=args.rank, budgets=[k], local_steps=args.steps, lr=2e-3, rounds=1,
                       lora_scaling=layers.scaling, client_optimizer="adamw")
    algo = get_algorithm("fslora")
    shapes = ModelShapes(layers, task.client_sizes)
    state = algo.init(shapes, config)
    plans = {}
    for v in VARIANTS:
        cfg = config.replace(form=v)
        plans[v] = (algo.configure_round(state, shapes, cfg, 0, [0])[0], cfg)
    return layers, task, plans, layers.dtype.itemsize, k


def worker(args) -> int:
    """Fresh process: one variant only, then report its peak RSS."""
    from .client import train_client
    layers, task, plans, _, _ = setup(args)
    plan, cfg = plans[args.worker]
    reset = _reset_peak_rss()  # model loading sets the whole-process peak; also see training alone
    for rep in range(2):
        train_client(layers, task, plan, cfg, rep)
    print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "training_peak_rss_bytes": _vm_hwm() if reset else None}))
    return 0


def _reset_peak_rss() -> bool:
    """Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _vm_hwm() -> int | None:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def check_args(args) -> None:
    """One-line errors naming the option, and the --json path checked, before the model loads."""
    from fslora_ref.outputs import check_output_file
    from fslora_ref.validation import check_int
    from .limits import check_counts
    check_counts({name: getattr(args, name) for name in ("rank", "batch_size", "steps", "repeats", "threads")})
    if args.k is not None:
        check_int("--k", args.k, low=1, high=args.rank)
    if args.json_path is not None:
        check_output_file(args.json_path, "--json")


def run(args) -> int:
    if args.worker:
        return worker(args)
    check_args(args)
    from fslora_ref.outputs import write_json
    from fslora_ref.progress import Progress

    from .client import allocated_trainable_floats, train_client
    layers, task, plans, elem, k = setup(args)
    state_bytes, accounted, times = {}, {}, {v: [] for v in VARIANTS}
    bar = Progress(2 * (args.repeats + 1) + 2, "bench --bridge")
    for rep in range(args.repeats + 1):  # first pass warms up and is discarded; variants alternate
        for v in VARIANTS:
            plan, cfg = plans[v]
            keep = {}
            t0 = time.perf_counter()
            upload = train_client(layers, task, plan, cfg, rep, keep=keep)
            if rep:
                times[v].append((time.perf_counter() - t0) / cfg.local_steps)
            state_bytes[v] = allocated_trainable_floats(keep["params"], keep["optimizer"]) * elem
            accounted[v] = upload.memory_floats * elem
            bar.update(1, v)
    peak, train_peak = {}, {}
    for v in VARIANTS:  # one fresh process per variant, run one after the other
        cmd = [sys.executable, "-m", "llm_bridge.bench", "--worker", v, "--rank", str(args.rank), "--k", str(k),
               "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--threads", str(args.threads)]
        if args.tiny:
            cmd.append("--tiny")
        done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
        if done.returncode != 0:
            raise RuntimeError(f"bench worker {v} failed: {done.stderr.strip().splitlines()[-1:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        peak[v], train_peak[v] = report["peak_rss_bytes"], report["training_peak_rss_bytes"]
        bar.update(1, f"peak {v}")
    bar.close()
    step = {v: statistics.median(times[v]) for v in VARIANTS}
    result = {
        "memory_ratio": state_bytes["submatrix"] / state_bytes["masked"],
        "step_time_ratio": step["submatrix"] / step["masked"],
        "peak_rss_ratio": peak["submatrix"] / peak["masked"],
        "trainable_state_bytes": state_bytes, "accounted_state_bytes": accounted,
        "step_seconds": step, "peak_rss_bytes": peak, "training_peak_rss_bytes": train_peak,
        "setting": {"model": "tiny" if args.tiny else "smollm2", "rank": args.rank, "k": k,
                    "targets": "q,k,v,o", "optimizer": "adamw", "batch_size": args.batch_size,
                    "steps_per_update": args.steps, "repeats": args.repeats, "threads": args.threads,
                    "lora_layers": len(layers)},
    }
    mb = 1 / 2 ** 20
    print(f"setting: {result['setting']['model']}, r={args.rank}, k={k}, {len(layers)} LoRA layers, AdamW, "
          f"batch {args.batch_size}, median of {args.repeats} client updates x {args.steps} steps")
    print(f"client trainable state (params+grads+AdamW): rank-k copy {state_bytes['submatrix'] * mb:8.2f} MB   "
          f"masked full rank {state_bytes['masked'] * mb:8.2f} MB   memory_ratio {result['memory_ratio']:.3f} (target <= 0.15)")
    print(f"client step time: rank-k copy {step['submatrix'] * 1e3:8.1f} ms   masked full rank "
          f"{step['masked'] * 1e3:8.1f} ms   step_time_ratio {result['step_time_ratio']:.3f} (target <= 1.0)")
    print(f"whole-process peak RSS: rank-k copy {peak['submatrix'] * mb:8.1f} MB   masked full rank "
          f"{peak['masked'] * mb:8.1f} MB   ratio {result['peak_rss_ratio']:.3f} (base model and activations dominate)")
    if None not in train_peak.values():
        print(f"peak RSS while training (reset after loading): rank-k copy {train_peak['submatrix'] * mb:8.1f} MB   "
              f"masked full rank {train_peak['masked'] * mb:8.1f} MB")
    if args.json_path:
        write_json(args.json_path, result)
        print(f"wrote {args.json_path}")
    return 0


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(prog="llm_bridge.bench")
    configure_parser(parser)
    sys.exit(run(parser.parse_args()))
