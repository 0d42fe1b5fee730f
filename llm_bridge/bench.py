"""Library side of ``fslora bench --bridge``: the FSLoRA client on a real LM, rank-k copy vs masked full rank.

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

from dataclasses import dataclass
from typing import ClassVar

from fslora_ref.jobs import Job

VARIANTS = ("submatrix", "masked")


@dataclass(frozen=True)
class BridgeBench(Job):
    """What ``fslora bench --bridge`` measures: one client of budget k on the tiny Llama or SmolLM2.

    Parameters
    ----------
    tiny : bool, default False
        The tiny random Llama instead of SmolLM2.
    rank : int, default 64
        The global rank r (the paper's 64).
    k : int or None
        The client budget (None: r/8).
    batch_size : int, default 8
        Examples per local step.
    steps : int, default 3
        Local steps per timed client update.
    repeats : int, default 7
        Timed client updates per variant (the median is reported).
    threads : int, default 1
        torch CPU threads.
    """

    NAME: ClassVar[str] = "bench --bridge"

    tiny: bool = False          # the tiny random Llama instead of SmolLM2
    rank: int = 64              # global rank r (the paper's 64)
    k: int | None = None        # client budget (None: r/8)
    batch_size: int = 8
    steps: int = 3              # local steps per timed client update
    repeats: int = 7            # timed client updates per variant (median reported)
    threads: int = 1            # torch CPU threads

    @property
    def budget(self) -> int:
        """The client budget k (``k``, or r/8 when None)."""
        return self.k or max(1, self.rank // 8)

    def validate(self) -> None:
        """One-line errors naming the option, before the model loads."""
        from fslora_ref.validation import check_int

        from .limits import check_counts
        check_counts({name: getattr(self, name) for name in ("rank", "batch_size", "steps", "repeats", "threads")})
        if self.k is not None:
            check_int("--k", self.k, low=1, high=self.rank)


def setup(setting: BridgeBench):
    """One client of budget k on the model, with a plan per variant.

    Parameters
    ----------
    setting : BridgeBench
        What to measure.

    Returns
    -------
    layers : LoraLayers
        The model's LoRA layers.
    task : InstructionTask
        One client's synthetic data.
    plans : dict
        ``{variant: (ClientPlan, FedConfig)}`` for each of ``VARIANTS``.
    element_bytes : int
        Bytes per element of the LoRA weights.
    k : int
        The client budget.
    """
    from fslora_ref.algorithms import get_algorithm
    from fslora_ref.config import FedConfig

    from .data import FAMILIES, dirichlet_partition
    from .federated import ModelShapes
    from .finetune import setup_torch
    from .models import load_model
    from .peft_layers import LoraLayers, add_lora
    from .task import InstructionTask
    setup_torch(setting.threads)
    model, tok = load_model("tiny" if setting.tiny else "smollm2")
    layers = LoraLayers(add_lora(model, setting.rank, 2.0 * setting.rank, ["q_proj", "k_proj", "v_proj", "o_proj"]))
    k = setting.budget
    if not 1 <= k <= setting.rank:
        raise ValueError(f"--k must be in [1, {setting.rank}] (the adapter's rank r), got {k}")
    task = InstructionTask(tok, dirichlet_partition(1, list(FAMILIES), 64, 1.0, 0), setting.batch_size)
    config = FedConfig(rank=setting.rank, budgets=[k], local_steps=setting.steps, lr=2e-3, rounds=1,
                       lora_scaling=layers.scaling, client_optimizer="adamw")
    algo = get_algorithm("fslora")
    shapes = ModelShapes(layers, task.client_sizes)
    state = algo.init(shapes, config)
    plans = {}
    for v in VARIANTS:
        cfg = config.replace(form=v)
        plans[v] = (algo.configure_round(state, shapes, cfg, 0, [0])[0], cfg)
    return layers, task, plans, layers.dtype.itemsize, k


def worker(setting: BridgeBench, variant: str) -> int:
    """Fresh process: one variant only, then print its peak RSS as a JSON line.

    Parameters
    ----------
    setting : BridgeBench
        What to measure.
    variant : str
        One of ``VARIANTS``.

    Returns
    -------
    int
        0 (the process's exit code).
    """
    from .client import train_client
    layers, task, plans, _, _ = setup(setting)
    plan, cfg = plans[variant]
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


def run_bridge_bench(setting: BridgeBench, json_path: str | None = None) -> dict:
    """Measure ``setting`` (memory, step time, each variant's peak RSS in a fresh process), print
    the figures and return them (also written to ``json_path`` if given).

    Parameters
    ----------
    setting : BridgeBench
        What to measure (validated first).
    json_path : str or None
        Where to write the figures as JSON.

    Returns
    -------
    dict
        ``memory_ratio``, ``step_time_ratio``, ``peak_rss_ratio`` and the figures behind them.
    """
    setting.validate()
    if json_path is not None:
        from fslora_ref.outputs import check_output_file
        check_output_file(json_path, "--json")
    from fslora_ref.outputs import write_json
    from fslora_ref.progress import Progress

    from .client import allocated_trainable_floats, train_client
    layers, task, plans, elem, k = setup(setting)
    state_bytes, accounted, times = {}, {}, {v: [] for v in VARIANTS}
    bar = Progress(2 * (setting.repeats + 1) + 2, "bench --bridge")
    for rep in range(setting.repeats + 1):  # first pass warms up and is discarded; variants alternate
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
        cmd = [sys.executable, "-m", "llm_bridge.bench", v, json.dumps(setting.replace(k=k).to_dict())]
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
        "setting": {"model": "tiny" if setting.tiny else "smollm2", "rank": setting.rank, "k": k,
                    "targets": "q,k,v,o", "optimizer": "adamw", "batch_size": setting.batch_size,
                    "steps_per_update": setting.steps, "repeats": setting.repeats, "threads": setting.threads,
                    "lora_layers": len(layers)},
    }
    mb = 1 / 2 ** 20
    print(f"setting: {result['setting']['model']}, r={setting.rank}, k={k}, {len(layers)} LoRA layers, AdamW, "
          f"batch {setting.batch_size}, median of {setting.repeats} client updates x {setting.steps} steps")
    print(f"client trainable state (params+grads+AdamW): rank-k copy {state_bytes['submatrix'] * mb:8.2f} MB   "
          f"masked full rank {state_bytes['masked'] * mb:8.2f} MB   memory_ratio {result['memory_ratio']:.3f} (target <= 0.15)")
    print(f"client step time: rank-k copy {step['submatrix'] * 1e3:8.1f} ms   masked full rank "
          f"{step['masked'] * 1e3:8.1f} ms   step_time_ratio {result['step_time_ratio']:.3f} (target <= 1.0)")
    print(f"whole-process peak RSS: rank-k copy {peak['submatrix'] * mb:8.1f} MB   masked full rank "
          f"{peak['masked'] * mb:8.1f} MB   ratio {result['peak_rss_ratio']:.3f} (base model and activations dominate)")
    if None not in train_peak.values():
        print(f"peak RSS while training (reset after loading): rank-k copy {train_peak['submatrix'] * mb:8.1f} MB   "
              f"masked full rank {train_peak['masked'] * mb:8.1f} MB")
    if json_path:
        write_json(json_path, result)
        print(f"wrote {json_path}")
    return result


if __name__ == "__main__":  # the worker: python -m llm_bridge.bench VARIANT '<BridgeBench as JSON>'
    sys.exit(worker(BridgeBench.from_dict(json.loads(sys.argv[2])), sys.argv[1]))
