"""Library side of ``fslora claims --llm``: claim 1 (FSLoRA vs HetLoRA, FlexLoRA, FLoRA at the paper's budgets;
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

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import ClassVar

from fslora_ref.algorithms import ALGORITHMS, get_algorithm
from fslora_ref.federation import run_round
from fslora_ref.jobs import Job
from fslora_ref.outputs import check_output_names, prepare_output_dir
from fslora_ref.progress import Progress
from fslora_ref.validation import check_positive_float
from theory.empirical import claims as claims_mod
from theory.empirical import job as claims_job
from theory.empirical import report
from theory.empirical.runs import RunResult
from theory.empirical.stats import NOT_SUPPORTED, Metric
from theory.empirical.store import RunStore

from .data import FAMILIES
from .job import DEFAULT_TARGETS, FinetuneJob

FAMILY = "llm_synthetic"
METRICS = (
    Metric("heldout", "held-out loss: answer-token cross-entropy of the global model on held-out prompts of the "
                      "synthetic families (token-weighted mean)"),
    Metric("accuracy", "held-out greedy exact-match accuracy (mean over families)", better="higher"),
)


@dataclass(frozen=True)
class LLMClaimsJob(Job):
    """Claim 1 on a real LM: its size (``fslora claims --llm --help`` describes each field).

    Parameters
    ----------
    model : str, default "smollm2"
        "smollm2", "tiny" or a local model directory.
    seeds : int, default 2
        Seeds 0..N-1 (at least 2).
    algorithms : str, default every algorithm
        Comma-separated; must include fslora and a baseline.
    rank : int, default 16
        The global LoRA rank r.
    lora_alpha : float, default 32.0
        LoRA alpha (scaling s = alpha / r).
    clients : int, default 4
        N (budgets cycle over k_i / r = 1/8, 1/4, 1/2, 3/4).
    rounds : int, default 16
        Rounds per run.
    local_steps : int, default 5
        Local steps H.
    lr : float, default 2e-3
        The client step size.
    batch_size : int, default 4
        Examples per local step.
    examples_per_client : int, default 200
        Synthetic examples per client.
    dirichlet_alpha : float, default 0.5
        Non-IID level of the clients' family mix.
    eval_per_family : int, default 50
        Held-out examples per family.
    eval_every : int, default 4
        Held-out loss every this many rounds.
    threads : int, default 1
        torch CPU threads.
    alpha : float, default 0.05
        The one-sided test level per direction (Bonferroni over 3), in (0, 0.5).
    """

    NAME: ClassVar[str] = "claims --llm"

    model: str = "smollm2"               # 'smollm2', 'tiny' or a local model dir
    seeds: int = 2                       # seeds 0..N-1
    algorithms: str = ",".join(ALGORITHMS)
    rank: int = 16                       # global LoRA rank r
    lora_alpha: float = 32.0             # LoRA alpha (scaling s = alpha/r)
    clients: int = 4                     # N (budgets cycle over k_i/r = 1/8, 1/4, 1/2, 3/4)
    rounds: int = 16
    local_steps: int = 5
    lr: float = 2e-3
    batch_size: int = 4
    examples_per_client: int = 200
    dirichlet_alpha: float = 0.5
    eval_per_family: int = 50
    eval_every: int = 4                  # held-out loss every this many rounds
    threads: int = 1                     # torch CPU threads
    alpha: float = 0.05                  # one-sided level per direction (Bonferroni over 3)

    def validate(self) -> list:
        """One-line errors naming the option; returns the algorithm names.

        Returns
        -------
        list of str
            The algorithm names.
        """
        from .limits import check_counts
        check_counts({name: getattr(self, name) for name in ("seeds", "rank", "clients", "rounds", "local_steps",
                                                             "batch_size", "examples_per_client", "eval_per_family",
                                                             "eval_every", "threads")}, low={"seeds": 2})
        check_positive_float("--lr", self.lr)
        check_positive_float("--lora-alpha", self.lora_alpha)
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"--false-alarm-rate must be in (0, 0.5), got {self.alpha}")
        names = [a.strip() for a in self.algorithms.split(",") if a.strip()]
        for a in names:
            get_algorithm(a)
        if "fslora" not in names or len(names) < 2:
            raise ValueError(f"--algorithms must include fslora and at least one baseline, got {names}")
        if self.model not in ("tiny", "smollm2") and not os.path.isdir(self.model):
            raise FileNotFoundError(f"--model {self.model!r} is neither 'smollm2', 'tiny' nor an existing directory")
        return names


def llm_claim(rank: int, algorithms):
    """Claim 1 with the bridge's rank, restricted to the algorithms run.

    Parameters
    ----------
    rank : int
        The adapter's rank r.
    algorithms : collection of str
        The algorithms run.

    Returns
    -------
    Claim
    """
    claim = claims_mod.build_claims()[0]
    arms = tuple(dataclasses.replace(a, rank=rank) for a in claim.arms if a.algorithm in algorithms)
    labels = {a.label for a in arms}
    return dataclasses.replace(claim, arms=arms,
                               comparisons=tuple(c for c in claim.comparisons if set(c) <= labels),
                               context=tuple(c for c in claim.context if c in labels))


def finetune_job(job: LLMClaimsJob, seed: int, algorithm: str) -> FinetuneJob:
    """The ``fslora finetune`` job of one run (its data, budgets and config helpers are reused).

    Parameters
    ----------
    job : LLMClaimsJob
    seed : int
    algorithm : str

    Returns
    -------
    FinetuneJob
    """
    return FinetuneJob(model=job.model, rank=job.rank, alpha=job.lora_alpha, clients=job.clients,
                       ratios=tuple(claims_mod.PAPER_RATIOS), rounds=job.rounds, local_steps=job.local_steps,
                       lr=job.lr, batch_size=job.batch_size, examples_per_client=job.examples_per_client,
                       dirichlet_alpha=job.dirichlet_alpha, eval_per_family=job.eval_per_family,
                       eval_every=job.eval_every, threads=job.threads, seed=seed, algorithm=algorithm,
                       families=tuple(FAMILIES))


def recipe(job) -> dict:
    """What a stored run must agree on to be reused (everything but the seed and algorithm).

    Parameters
    ----------
    job : LLMClaimsJob

    Returns
    -------
    dict
    """
    keys = ("model", "rank", "lora_alpha", "clients", "rounds", "local_steps", "lr", "batch_size",
            "examples_per_client", "dirichlet_alpha", "eval_per_family", "eval_every", "threads")
    return {k: getattr(job, k) for k in keys}


def heldout_loss(model, task, batch_size: int = 16) -> float:
    """Token-weighted answer cross-entropy of ``model`` over task client 0 (the held-out set).

    Parameters
    ----------
    model : torch.nn.Module
    task : InstructionTask
        Whose client 0 is the held-out set.
    batch_size : int, default 16

    Returns
    -------
    float
    """
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


def run_one(layers, tok, job, seed, algorithm_name, arm, log, initial: dict) -> dict:
    """One federated run of ``algorithm_name`` on seed ``seed``; returns its RunResult as JSON.

    Every algorithm starts from the same model (B random, A = 0, so W = W0), so the untrained
    model is measured once per seed.

    Parameters
    ----------
    layers : LoraLayers
        The model's LoRA layers.
    tok : tokenizer
    job : LLMClaimsJob
    seed : int
    algorithm_name : str
    arm : Arm
        The claim's arm of this algorithm.
    log : callable
        Progress messages.
    initial : dict
        ``{seed: (held-out loss, accuracy)}`` of the untrained model (filled on first use).

    Returns
    -------
    dict
        The RunResult as JSON.
    """
    from .federated import ModelShapes, TorchClients, global_factors
    from .finetune import build_data, make_config
    from .task import InstructionTask, evaluate
    run_job = finetune_job(job, seed, algorithm_name)
    task, held, _ = build_data(run_job, tok)
    held_task = InstructionTask(tok, [held], job.batch_size)
    config = make_config(run_job, layers)
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
        if last or (t + 1) % job.eval_every == 0:
            measure(t + 1, with_accuracy=last)
            note = f", held-out loss {result.metrics['heldout'][-1]:.4f}"
        log(f"seed {seed} {algorithm_name} round {t + 1}/{config.rounds}{note} ({time.perf_counter() - t0:.0f} s)")
    out = result.to_json()
    out["seconds"] = time.perf_counter() - t0
    return out


def run_llm_claims(job: LLMClaimsJob, out: str, *, resume: bool = False) -> int:
    """Run claim 1 on the LM ``job`` names, print the table, write the report and runs.json into ``out``.

    Parameters
    ----------
    job : LLMClaimsJob
        Validated first.
    out : str
        The output directory.
    resume : bool, default False
        Reuse the runs stored in ``out/runs.json`` of the same recipe.

    Returns
    -------
    int
        1 if the claim is not supported, else 0.
    """
    names = job.validate()
    prepare_output_dir(out)
    claim = llm_claim(job.rank, names)
    check_output_names(out, claims_job.output_names([claim]))
    store = RunStore(os.path.join(out, "runs.json"), resume=resume)
    seeds = list(range(job.seeds))
    todo = [(s, a) for s in seeds for a in claim.arms
            if store.get(f"seed{s}/{a.algorithm}", dict(recipe(job), seed=s, algorithm=a.algorithm)) is None]
    print(f"claims --llm: {len(seeds) * len(claim.arms) - len(todo)} finished runs reused, {len(todo)} to run", flush=True)
    start = time.perf_counter()
    if todo:
        from .finetune import setup_torch
        from .models import load_model
        from .peft_layers import LoraLayers, add_lora
        import torch
        setup_torch(job.threads)
        model, tok = load_model(job.model, dtype=torch.float32, seed=0)
        layers = LoraLayers(add_lora(model, job.rank, job.lora_alpha, list(DEFAULT_TARGETS)))
        bar, initial = Progress(len(todo), "claims --llm"), {}
        for seed, arm in todo:
            rec = run_one(layers, tok, job, seed, arm.algorithm, arm, lambda msg: print(msg, flush=True), initial)
            store.put([(f"seed{seed}/{arm.algorithm}", dict(recipe(job), seed=seed, algorithm=arm.algorithm), rec)])
            bar.update(1, f"seed {seed} {arm.algorithm} done in {rec['seconds']:.0f} s")
        bar.close()
    records = {(s, a.algorithm): store.get(f"seed{s}/{a.algorithm}", dict(recipe(job), seed=s, algorithm=a.algorithm))
               for s in seeds for a in claim.arms}
    runs = {a.key: [RunResult(**{k: v for k, v in records[(s, a.algorithm)].items() if k != "seconds"})
                    for s in seeds] for a in claim.arms}
    settings = dict(recipe(job), ratios=list(claims_mod.PAPER_RATIOS), targets=list(DEFAULT_TARGETS),
                    client_optimizer="adamw", families=list(FAMILIES))
    entry = claims_mod.evaluate(claim, FAMILY, runs, seeds, settings, alpha=job.alpha, metrics=METRICS)
    run_seconds = {f"seed{s}/{a}": records[(s, a)]["seconds"] for s, a in records}
    meta = {"mode": "llm", "llm": True, "seeds": seeds, "families": [FAMILY], "alpha": job.alpha,
            "seconds": time.perf_counter() - start, "run_seconds": run_seconds,
            "total_run_seconds": sum(run_seconds.values())}
    print(report.table([entry]))
    paths = report.write_all(out, [entry], meta, [claim], {FAMILY: runs})
    print(f"\nruns took {meta['total_run_seconds']:.0f} s in total; wrote " + ", ".join(paths + [store.path]))
    return 1 if entry["status"] == NOT_SUPPORTED else 0
