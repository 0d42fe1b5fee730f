"""Federated fine-tuning of a real LLM's LoRA layers: the loop behind ``fslora finetune``.

Round t: the reference's ``configure_round`` draws the plans (FSLoRA's sketches), each client
trains its rank-k_i copy on the torch model, the reference's ``aggregate`` updates the server
state. The global model is evaluated before training and every ``eval_every`` rounds; the
run writes history.json, curves.png, a checkpoint after every round and the final adapter in
PEFT format (``adapter/``).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

import numpy as np

from fslora_ref.algorithms import get_algorithm
from fslora_ref.config import FedConfig, budgets_from_ratios
from fslora_ref.federation import atomic_write_bytes, load_checkpoint, run_round, save_checkpoint
from fslora_ref.progress import Progress

from . import data as data_mod
from .device import resolve_device, torch_dtype
from .federated import ModelShapes, TorchClients, exportable_factors, global_factors
from .models import load_model
from .peft_layers import LoraLayers, add_lora
from .task import InstructionTask, evaluate


def setup_torch(threads: int):
    """Deterministic CPU torch with an explicit thread count (no global RNG is ever used:
    LoRA init and batches come from fslora_ref's seeded streams, dropout is 0)."""
    import torch
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


def build_data(args, tok):
    """(task, held-out examples, info) from the synthetic families or commonsense JSON files."""
    if args.train_json:
        pools = [data_mod.load_commonsense(p) for p in args.train_json]
        held = [e for p in (args.eval_json or []) for e in data_mod.load_commonsense(p)]
        if not held:
            raise ValueError("--eval-json must name at least one commonsense file when --train-json is given")
        held = _per_family_head(held, args.eval_per_family)
        clients = data_mod.partition_pools(pools, args.clients, args.dirichlet_alpha, args.seed)
        info = {"reference_rates": data_mod.reference_rates(held)}
    else:
        families = args.families
        clients = data_mod.dirichlet_partition(args.clients, families, args.examples_per_client,
                                               args.dirichlet_alpha, args.seed)
        held = data_mod.held_out_set(families, args.eval_per_family, args.seed)
        info = {"constant_answer_rate": data_mod.constant_answer_rate(held)}
    info["client_family_counts"] = [{f: sum(e.family == f for e in c) for f in sorted({e.family for e in c})}
                                    for c in clients]
    return InstructionTask(tok, clients, args.batch_size), held, info


def _per_family_head(examples, per_family):
    seen, out = {}, []
    for e in examples:
        if seen.get(e.family, 0) < per_family:
            seen[e.family] = seen.get(e.family, 0) + 1
            out.append(e)
    return out


def make_config(args, layers) -> FedConfig:
    r = layers.rank
    if args.budgets:
        for i, k in enumerate(args.budgets):
            if not 1 <= k <= r:
                raise ValueError(f"--budgets[{i}] = {k} must be in [1, {r}] (the adapter's rank r)")
        budgets = [args.budgets[i % len(args.budgets)] for i in range(args.clients)]
    else:
        budgets = budgets_from_ratios(r, args.ratios, args.clients)
    extra = {k: v for k, v in vars(args).items() if k in RECIPE_KEYS}
    return FedConfig(rank=r, budgets=budgets, local_steps=args.local_steps, lr=args.lr, rounds=args.rounds,
                     seed=args.seed, lora_scaling=layers.scaling, client_optimizer=args.client_optimizer,
                     weight_decay=args.weight_decay, client_fraction=args.client_fraction,
                     server_optimizer=args.server_optimizer, server_lr=args.server_lr, extra=extra)


# what else, besides FedConfig, must agree for a checkpoint to be resumed
RECIPE_KEYS = ("model", "algorithm", "alpha", "rslora", "targets", "families", "examples_per_client",
               "dirichlet_alpha", "batch_size", "eval_per_family", "eval_every", "train_json", "eval_json", "dtype", "threads")  # threads: float rounding


def evaluate_global(layers, tok, held, algorithm_name, state, config, shapes):
    layers.install(global_factors(algorithm_name, state, config, shapes.layer_shapes), trainable=False)
    return evaluate(layers.model, tok, held)


def finetune(args, round_fn=None) -> dict:
    """Run (or resume) a federated fine-tuning job described by ``args`` (see cli.py);
    returns the history dict also written to ``<out>/history.json``. round_fn: how one round
    runs (``fslora_ref.federation.run_round``'s signature; the Flower app trains the clients
    on remote nodes through it)."""
    import torch
    setup_torch(args.threads)
    dtype, device = torch_dtype(args.dtype), resolve_device(args.device)
    t_start = time.perf_counter()
    model, tok = load_model(args.model, dtype=dtype, seed=args.seed, device=device)
    peft_model = add_lora(model, args.rank, args.alpha, args.targets, args.rslora)
    layers = LoraLayers(peft_model)
    task, held, info = build_data(args, tok)
    config = make_config(args, layers)
    shapes = ModelShapes(layers, task.client_sizes)
    algorithm = get_algorithm(args.algorithm)
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "checkpoint.pkl")
    if args.resume and os.path.exists(ckpt):
        state, history, start = load_checkpoint(ckpt, algorithm.name, config)
    else:
        state = algorithm.init(shapes, config)
        history = new_history(args, config, layers, info, shapes)
        ev = evaluate_global(layers, tok, held, algorithm.name, state, config, shapes)
        history["eval"].append(dict(round=0, **ev))
        start = 0
    elem = torch.finfo(dtype).bits // 8
    rounds_bar = Progress(config.rounds, "rounds")
    rounds_bar.update(start)
    for t in range(start, config.rounds):
        participants = config.participants(t)
        bar = Progress(len(participants), f"  round {t + 1} clients")
        clients = TorchClients(algorithm, layers, task, on_client=lambda up: bar.update(1, f"client {up.client}"))
        t0 = time.perf_counter()
        state, plans, uploads = (round_fn or run_round)(clients, state, shapes, config, t)
        bar.close()
        history["rounds"].append(round_row(t, plans, uploads, elem, time.perf_counter() - t0))
        if (t + 1) % args.eval_every == 0 or t + 1 == config.rounds:
            ev = evaluate_global(layers, tok, held, algorithm.name, state, config, shapes)
            history["eval"].append(dict(round=t + 1, **ev))
        save_checkpoint(ckpt, algorithm.name, config, state, history, t + 1)
        write_outputs(args.out, history)
        last = history["eval"][-1]
        rounds_bar.update(1, f"loss {history['rounds'][-1]['train_loss']:.3f} acc@{last['round']} {last['mean']:.2f}")
        if args.stop_after is not None and t + 1 >= args.stop_after:
            break
    rounds_bar.close()
    done = len(history["rounds"]) == config.rounds
    if done:
        pairs, exact = exportable_factors(algorithm.name, state, config)
        export_adapter(layers, pairs, config, os.path.join(args.out, "adapter"))
        history["adapter"] = {"path": os.path.join(args.out, "adapter"), "exact": exact}
        if args.verify_adapter:
            history["adapter"]["reload_eval"] = reload_and_evaluate(args, os.path.join(args.out, "adapter"), held)
    history["wall_seconds_this_process"] = time.perf_counter() - t_start
    write_outputs(args.out, history)
    return history


def new_history(args, config, layers, info, shapes) -> dict:
    return {"config": config.to_json(), "algorithm": args.algorithm, "model": args.model,
            "layers": layers.names, "layer_shapes": [list(s) for s in shapes.layer_shapes],
            "lora_scaling": layers.scaling, "client_sizes": shapes.client_sizes, "data": info,
            "rounds": [], "eval": []}


def round_row(t, plans, uploads, elem_bytes, seconds) -> dict:
    """Per-round record: losses, and per-client upload / download / trainable-state memory."""
    return {"round": t + 1, "seconds": seconds,
            "train_loss": float(np.mean([np.mean(u.losses) for u in uploads])),
            "clients": [{"client": u.client, "k": int(p.factors[0].B.shape[1]), "loss_first": u.losses[0],
                         "loss_last": u.losses[-1], "upload_floats": u.upload_floats,
                         "download_floats": p.download_floats, "broadcast_floats": p.broadcast_floats,
                         "memory_floats": u.memory_floats, "memory_bytes": u.memory_floats * elem_bytes}
                        for p, u in zip(plans, uploads)]}


def export_adapter(layers, pairs, config, path):
    """Save rank-r (B, A) as a PEFT adapter directory (written to a temp dir, then renamed)."""
    from fslora_ref.lora import LayerFactors
    coeff = config.lora_scaling * np.ones(config.rank)
    layers.install([LayerFactors(B, A, coeff) for B, A in pairs], trainable=False)
    parent = os.path.dirname(os.path.abspath(path))
    tmp = tempfile.mkdtemp(prefix=".adapter-", dir=parent)
    layers.model.save_pretrained(tmp)
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=".old-adapter-", dir=parent)
        os.replace(path, os.path.join(old, "a"))
        shutil.rmtree(old)
    os.replace(tmp, path)


def reload_and_evaluate(args, adapter_path, held) -> dict:
    """Load the base model afresh, attach the saved adapter with PeftModel.from_pretrained,
    and evaluate: this must reproduce the run's final evaluation."""
    from peft import PeftModel
    model, tok = load_model(args.model, dtype=torch_dtype(args.dtype), seed=args.seed, device=resolve_device(args.device))
    peft_model = PeftModel.from_pretrained(model, adapter_path)
    peft_model.eval()
    return evaluate(peft_model, tok, held)


def write_outputs(out, history):
    atomic_write_bytes(os.path.join(out, "history.json"), json.dumps(history, indent=1, default=_jsonable).encode())
    from .plots import plot_history
    plot_history(history, os.path.join(out, "curves.png"))


def _jsonable(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
