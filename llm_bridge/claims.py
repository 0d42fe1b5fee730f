"""``fslora claims --llm``: claim 1 (FSLoRA vs HetLoRA, FlexLoRA, FLoRA at the paper's budgets;
FedIT at full rank for context) on a real causal LM with the synthetic instruction families.

Per seed every algorithm starts from the same LoRA initialisation, trains on the same
Dirichlet non-IID client data with the same minibatch streams (``fslora finetune``'s recipe),
and is evaluated on the same held-out prompts: the held-out answer-token cross-entropy every
``--eval-every`` rounds (the primary metric) and greedy exact-match accuracy at the end. The
statistics, claim definition and report are ``theory.empirical``'s. Each finished (seed,
algorithm) run is stored in ``<out>/runs.json`` at once; ``--resume`` skips finished runs, so
an interruption loses at most the run in progress.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time

from fslora_ref.algorithms import ALGORITHMS, get_algorithm
from fslora_ref.federation import run_round
from fslora_ref.outputs import prepare_output_dir
from fslora_ref.progress import Progress
from fslora_ref.validation import check_positive_float
from theory.empirical import claims as claims_mod
from theory.empirical import report
from theory.empirical.runs import RunResult
from theory.empirical.stats import NOT_SUPPORTED, Metric
from theory.empirical.store import RunStore

from . import cli as finetune_cli
from .data import FAMILIES

FAMILY = "llm_synthetic"
METRICS = (
    Metric("heldout", "held-out loss: answer-token cross-entropy of the global model on held-out prompts of the "
                      "synthetic families (token-weighted mean)"),
    Metric("accuracy", "held-out greedy exact-match accuracy (mean over families)", better="higher"),
)


def configure_parser(p):
    p.add_argument("--llm", action="store_true", help="run on the LLM bridge (this command)")
    p.add_argument("--model", default="smollm2", help="'smollm2' (default), 'tiny' or a local model dir")
    p.add_argument("--out", default="runs/claims-llm", help="output directory (report, figure, runs.json)")
    p.add_argument("--seeds", type=int, default=2, help="seeds 0..N-1 (default 2)")
    p.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated subset (default: all five)")
    p.add_argument("--rank", type=int, default=16, help="global LoRA rank r")
    p.add_argument("--lora-alpha", type=float, default=32.0, help="LoRA alpha (scaling s = alpha/r)")
    p.add_argument("--clients", type=int, default=4, help="N (budgets cycle over k_i/r = 1/8, 1/4, 1/2, 3/4)")
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--local-steps", type=int, default=5, help="H")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--examples-per-client", type=int, default=200)
    p.add_argument("--dirichlet-alpha", type=float, default=0.5)
    p.add_argument("--eval-per-family", type=int, default=50)
    p.add_argument("--eval-every", type=int, default=4, help="held-out loss every this many rounds")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--alpha", type=float, default=0.05, help="one-sided level per direction (Bonferroni over 3)")
    p.add_argument("--resume", action="store_true", help="reuse the finished runs in <out>/runs.json")
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)   # the NumPy command's options, refused below
    p.add_argument("--family", default=None, help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)


def validate(args) -> list:
    if args.only not in (None, "1", "claim1") or args.family or args.quick:
        raise ValueError("--llm runs claim 1 only, at its own size: --only, --family and --quick do not apply")
    from .limits import check_counts
    check_counts({name: getattr(args, name) for name in ("seeds", "rank", "clients", "rounds", "local_steps",
                                                         "batch_size", "examples_per_client", "eval_per_family",
                                                         "eval_every", "threads")}, low={"seeds": 2})
    check_positive_float("--lr", args.lr)
    check_positive_float("--lora-alpha", args.lora_alpha)
    if not 0.0 < args.alpha < 0.5:
        raise ValueError(f"--alpha must be in (0, 0.5), got {args.alpha}")
    names = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    for a in names:
        get_algorithm(a)
    if "fslora" not in names or len(names) < 2:
        raise ValueError(f"--algorithms must include fslora and at least one baseline, got {names}")
    if args.model not in ("tiny", "smollm2") and not os.path.isdir(args.model):
        raise FileNotFoundError(f"--model {args.model!r} is neither 'smollm2', 'tiny' nor an existing directory")
    return names


def llm_claim(rank: int, algorithms):
    """Claim 1 with the bridge's rank, restricted to the algorithms run."""
    claim = claims_mod.build_claims()[0]
    arms = tuple(dataclasses.replace(a, rank=rank) for a in claim.arms if a.algorithm in algorithms)
    labels = {a.label for a in arms}
    return dataclasses.replace(claim, arms=arms,
                               comparisons=tuple(c for c in claim.comparisons if set(c) <= labels),
                               context=tuple(c for c in claim.context if c in labels))


def finetune_namespace(args, seed: int, algorithm: str):
    """The ``fslora finetune`` arguments of one run (its data, budgets and config helpers are reused)."""
    p = argparse.ArgumentParser()
    finetune_cli.configure_parser(p)
    ns = p.parse_args([])
    ns.__dict__.update(model=args.model, rank=args.rank, alpha=args.lora_alpha, clients=args.clients,
                       ratios=list(claims_mod.PAPER_RATIOS), rounds=args.rounds, local_steps=args.local_steps,
                       lr=args.lr, batch_size=args.batch_size, examples_per_client=args.examples_per_client,
                       dirichlet_alpha=args.dirichlet_alpha, eval_per_family=args.eval_per_family,
                       eval_every=args.eval_every, threads=args.threads, seed=seed, algorithm=algorithm,
                       families=list(FAMILIES))
    return ns


def recipe(args) -> dict:
    """What a stored run must agree on to be reused (everything but the seed and algorithm)."""
    keys = ("model", "rank", "lora_alpha", "clients", "rounds", "local_steps", "lr", "batch_size",
            "examples_per_client", "dirichlet_alpha", "eval_per_family", "eval_every", "threads")
    return {k: getattr(args, k) for k in keys}


def heldout_loss(model, task, batch_size: int = 16) -> float:
    """Token-weighted answer cross-entropy of ``model`` over task client 0 (the held-out set)."""
    import torch
    pairs = task.clients[0]
    total = tokens = 0.0
    with torch.no_grad():
        for start in range(0, len(pairs), batch_size):
            rows = list(range(start, min(len(pairs), start + batch_size)))
            count = sum(len(pairs[j][1]) for j in rows)
            total += float(task.loss(model, (0, rows))) * count
            tokens += count
    return total / tokens


def run_one(layers, tok, args, seed, algorithm_name, arm, log, initial: dict) -> dict:
    """One federated run of ``algorithm_name`` on seed ``seed``; returns its RunResult as JSON.

    initial: {seed: (held-out loss, accuracy)} of the untrained model. Every algorithm starts
    from the same model (B random, A = 0, so W = W0), so it is measured once per seed.
    """
    from .federated import ModelShapes, TorchClients, global_factors
    from .finetune import build_data, make_config
    from .task import InstructionTask, evaluate
    ns = finetune_namespace(args, seed, algorithm_name)
    task, held, _ = build_data(ns, tok)
    held_task = InstructionTask(tok, [held], args.batch_size)
    config = make_config(ns, layers)
    shapes = ModelShapes(layers, task.client_sizes)
    algorithm = get_algorithm(algorithm_name)
    state, uploaded = algorithm.init(shapes, config), 0
    result = RunResult(arm.key, seed, list(config.budgets), metrics={m.name: [] for m in METRICS})

    def measure(t, with_accuracy):
        layers.install(global_factors(algorithm_name, state, config, shapes.layer_shapes), trainable=False)
        acc = evaluate(layers.model, tok, held)["mean"] if with_accuracy else None
        result.record(t, uploaded, heldout=heldout_loss(layers.model, held_task), accuracy=acc)

    if seed in initial:
        result.record(0, 0, heldout=initial[seed][0], accuracy=initial[seed][1])
    else:
        measure(0, with_accuracy=True)
        initial[seed] = (result.metrics["heldout"][0], result.metrics["accuracy"][0])
    t0 = time.perf_counter()
    for t in range(config.rounds):
        state, _, uploads = run_round(TorchClients(algorithm, layers, task), state, shapes, config, t)
        uploaded += sum(u.upload_floats for u in uploads)
        last = t + 1 == config.rounds
        note = ""
        if last or (t + 1) % args.eval_every == 0:
            measure(t + 1, with_accuracy=last)
            note = f", held-out loss {result.metrics['heldout'][-1]:.4f}"
        log(f"seed {seed} {algorithm_name} round {t + 1}/{config.rounds}{note} ({time.perf_counter() - t0:.0f} s)")
    out = result.to_json()
    out["seconds"] = time.perf_counter() - t0
    return out


def run(args) -> int:
    names = validate(args)
    prepare_output_dir(args.out)
    store = RunStore(os.path.join(args.out, "runs.json"), resume=args.resume)
    claim = llm_claim(args.rank, names)
    seeds = list(range(args.seeds))
    todo = [(s, a) for s in seeds for a in claim.arms
            if store.get(f"seed{s}/{a.algorithm}", dict(recipe(args), seed=s, algorithm=a.algorithm)) is None]
    print(f"claims --llm: {len(seeds) * len(claim.arms) - len(todo)} finished runs reused, {len(todo)} to run", flush=True)
    start = time.perf_counter()
    if todo:
        from .finetune import setup_torch
        from .models import load_model
        from .peft_layers import LoraLayers, add_lora
        import torch
        setup_torch(args.threads)
        model, tok = load_model(args.model, dtype=torch.float32, seed=0)
        layers = LoraLayers(add_lora(model, args.rank, args.lora_alpha, finetune_cli.DEFAULT_TARGETS))
        bar, initial = Progress(len(todo), "claims --llm"), {}
        for seed, arm in todo:
            rec = run_one(layers, tok, args, seed, arm.algorithm, arm, lambda msg: print(msg, flush=True), initial)
            store.put([(f"seed{seed}/{arm.algorithm}", dict(recipe(args), seed=seed, algorithm=arm.algorithm), rec)])
            bar.update(1, f"seed {seed} {arm.algorithm} done in {rec['seconds']:.0f} s")
        bar.close()
    records = {(s, a.algorithm): store.get(f"seed{s}/{a.algorithm}", dict(recipe(args), seed=s, algorithm=a.algorithm))
               for s in seeds for a in claim.arms}
    runs = {a.key: [RunResult(**{k: v for k, v in records[(s, a.algorithm)].items() if k != "seconds"})
                    for s in seeds] for a in claim.arms}
    settings = dict(recipe(args), ratios=list(claims_mod.PAPER_RATIOS), targets=finetune_cli.DEFAULT_TARGETS,
                    client_optimizer="adamw", families=list(FAMILIES))
    entry = claims_mod.evaluate(claim, FAMILY, runs, seeds, settings, alpha=args.alpha, metrics=METRICS)
    run_seconds = {f"seed{s}/{a}": records[(s, a)]["seconds"] for s, a in records}
    meta = {"mode": "llm", "llm": True, "seeds": seeds, "families": [FAMILY], "alpha": args.alpha,
            "seconds": time.perf_counter() - start, "run_seconds": run_seconds,
            "total_run_seconds": sum(run_seconds.values())}
    print(report.table([entry]))
    paths = report.write_all(args.out, [entry], meta, [claim], {FAMILY: runs})
    print(f"\nruns took {meta['total_run_seconds']:.0f} s in total; wrote " + ", ".join(paths + [store.path]))
    return 1 if entry["status"] == NOT_SUPPORTED else 0
