"""Library side of ``fslora claims --llm``: claim 1 ("FSLoRA reaches a lower held-out loss than every
baseline": HetLoRA, FlexLoRA, FLoRA at the paper's budgets) on a real causal LM with the synthetic
instruction families, as a pre-declared sequential experiment (``sequential.py``).

One invocation:

1. writes the declared plan (``plan.json``: pilot, group size, maximum, spending function, the tuning
   grid and seeds) before any run, and refuses a different plan in the same directory;
2. tunes each algorithm's client learning rate: every grid value on the tuning seeds (disjoint from
   the evaluation seeds 0, 1, ...), the rule :data:`TUNING_RULE`;
3. runs the evaluation seeds up to the plan's next look (``looks`` looks per invocation), each seed's
   runs written to ``seeds/seedNNNN.json`` as they finish, and decides the look with the
   intersection-union test; stops when the plan stops;
4. writes ``report.json`` / ``report.md``.

``--resume`` reloads the tuning and seed records (a record of another config is refused with one line)
and goes on from there: seeds accumulate across runs, bit-identical to one run of the same seeds.

Per seed every algorithm starts from the same LoRA initialisation, trains on the same Dirichlet non-IID
client data with the same minibatch streams (``fslora finetune``'s recipe) and is evaluated on the same
held-out prompts. Primary metric: held-out answer-token cross-entropy after the last round. Also
greedy exact-match accuracy per family.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import ClassVar

from fslora_ref.algorithms import get_algorithm
from fslora_ref.federation import run_round
from fslora_ref.jobs import Job
from fslora_ref.outputs import check_output_names, prepare_output_dir, write_json
from fslora_ref.safe_json import read_json_file
from fslora_ref.validation import MAX_ROUNDS, check_int
from theory.empirical.claims import PAPER_RATIOS

from . import claim_records as records
from .claims_report import write_report
from .data import FAMILIES
from .job import DEFAULT_TARGETS, FinetuneJob
from .sequential import NOT_SUPPORTED, SequentialPlan, look_status

BASELINES = ("hetlora", "flexlora", "flora")     # claim 1's comparisons (FedIT, if run, is context)
DIVERGENCE_MULTIPLE = 10.0                       # held-out loss above this multiple of the initial one: diverged
TUNING_RULE = ("per algorithm, the grid value with the lowest mean held-out loss after the last tuning round over the "
               "tuning seeds (runs that diverged excluded; ties to the smaller step); tuning seeds are disjoint "
               "from the evaluation seeds 0, 1, ...")
OUTPUTS = ["plan.json", "report.json", "report.md"]


@dataclass(frozen=True)
class LLMClaimsJob(Job):
    """Claim 1 on a real LM: its size, tuning grid and sequential plan.

    Parameters
    ----------
    model : str, default "smollm2"
        "smollm2", "tiny" or a local model directory.
    algorithms : str, default "fslora,hetlora,flexlora,flora"
        Comma-separated; fslora and at least one of hetlora, flexlora, flora.
    rank : int, default 16
        The global LoRA rank r.
    lora_alpha : float, default 32.0
        LoRA alpha (scaling s = alpha / r).
    clients : int, default 4
        N (budgets cycle over k_i / r = 1/8, 1/4, 1/2, 3/4).
    rounds : int, default 4
        Rounds per evaluation run.
    tuning_rounds : int or None, default 2
        Rounds per tuning run (None: ``rounds``); shorter is cheaper, at the price of choosing the
        step that is best early (stated in the report).
    local_steps : int, default 2
        Local steps H.
    lrs : str, default "1e-3,2e-3,4e-3,8e-3"
        The client learning-rate grid (comma-separated; one value: no tuning).
    tuning_seeds : str, default "1000"
        Comma-separated tuning seeds (at least 1000: disjoint from the evaluation seeds).
    batch_size : int, default 4
        Examples per local step.
    examples_per_client : int, default 200
        Synthetic examples per client.
    dirichlet_alpha : float, default 0.5
        Non-IID level of the clients' family mix.
    eval_per_family : int, default 25
        Held-out examples per family.
    threads : int, default 1
        torch CPU threads.
    alpha : float, default 0.05
        The plan's overall one-sided level, in (0, 0.5).
    pilot_seeds, seed_step, max_seeds : int, default 3, 2, 9
        The sequential plan (:class:`llm_bridge.sequential.SequentialPlan`).
    looks : int, default 1
        How many of the plan's looks this invocation may advance (not part of the record's config); 0 runs
        nothing: the report of the records at hand (an unfinished tuning leaves the status inconclusive).
    """

    NAME: ClassVar[str] = "claims --llm"

    model: str = "smollm2"
    algorithms: str = "fslora,hetlora,flexlora,flora"
    rank: int = 16
    lora_alpha: float = 32.0
    clients: int = 4
    rounds: int = 4
    tuning_rounds: int | None = 2
    local_steps: int = 2
    lrs: str = "1e-3,2e-3,4e-3,8e-3"
    tuning_seeds: str = "1000"
    batch_size: int = 4
    examples_per_client: int = 200
    dirichlet_alpha: float = 0.5
    eval_per_family: int = 25
    threads: int = 1
    alpha: float = 0.05
    pilot_seeds: int = 3
    seed_step: int = 2
    max_seeds: int = 9
    looks: int = 1

    def validate(self) -> list:
        """One-line errors naming the option; returns the algorithm names.

        Returns
        -------
        list of str
            The algorithm names.
        """
        from .limits import check_counts
        check_counts({name: getattr(self, name) for name in ("rank", "clients", "rounds", "local_steps",
                                                             "batch_size", "examples_per_client", "eval_per_family",
                                                             "threads")})
        lr_grid(self)
        tuning_seeds(self)
        if self.tuning_rounds is not None:
            check_int("--tuning-rounds", self.tuning_rounds, low=1, high=MAX_ROUNDS)
        if not (isinstance(self.lora_alpha, (int, float)) and math.isfinite(self.lora_alpha) and self.lora_alpha > 0):
            raise ValueError(f"--lora-alpha must be a positive number, got {self.lora_alpha!r}")
        self.plan()
        if not (isinstance(self.looks, int) and 0 <= self.looks <= 1000):
            raise ValueError(f"--looks must be an integer in [0, 1000], got {self.looks!r}")
        names = [a.strip() for a in self.algorithms.split(",") if a.strip()]
        for a in names:
            get_algorithm(a)
        if "fslora" not in names or not set(names) & set(BASELINES) or len(set(names)) != len(names):
            raise ValueError(f"--algorithms must name fslora and at least one of {', '.join(BASELINES)}, each once, "
                             f"got {names}")
        if self.model not in ("tiny", "smollm2") and not os.path.isdir(self.model):
            raise FileNotFoundError(f"--model {self.model!r} is neither 'smollm2', 'tiny' nor an existing directory")
        return names

    def plan(self) -> SequentialPlan:
        """The declared sequential plan.

        Returns
        -------
        SequentialPlan
        """
        return SequentialPlan(self.pilot_seeds, self.seed_step, self.max_seeds, self.alpha).validate()


def lr_grid(job: LLMClaimsJob) -> list:
    """The learning-rate grid ``--lrs`` names, sorted.

    Parameters
    ----------
    job : LLMClaimsJob

    Returns
    -------
    list of float
    """
    try:
        grid = sorted({float(v) for v in str(job.lrs).split(",") if v.strip()})
    except ValueError:
        grid = []
    if not grid or not all(math.isfinite(v) and 0 < v <= 1 for v in grid) or len(grid) > 10:
        raise ValueError(f"--lrs must be 1 to 10 comma-separated numbers in (0, 1], got {job.lrs!r}")
    return grid


def tuning_seeds(job: LLMClaimsJob) -> list:
    """The tuning seeds ``--tuning-seeds`` names (each >= 1000, so never an evaluation seed).

    Parameters
    ----------
    job : LLMClaimsJob

    Returns
    -------
    list of int
    """
    try:
        seeds = sorted({int(v) for v in str(job.tuning_seeds).split(",") if v.strip()})
    except ValueError:
        seeds = []
    if not seeds or not all(1000 <= s < 10**6 for s in seeds) or len(seeds) > 10:
        raise ValueError(f"--tuning-seeds must be 1 to 10 comma-separated integers in [1000, 999999] "
                         f"(disjoint from the evaluation seeds), got {job.tuning_seeds!r}")
    return seeds


def base_config(job: LLMClaimsJob, names) -> dict:
    """What every record of this experiment shares: recipe, algorithms, tuning grid and seeds, plan.

    Parameters
    ----------
    job : LLMClaimsJob
    names : list of str
        The algorithms.

    Returns
    -------
    dict
    """
    keys = ("model", "rank", "lora_alpha", "clients", "rounds", "tuning_rounds", "local_steps", "batch_size",
            "examples_per_client", "dirichlet_alpha", "eval_per_family", "threads")
    return dict({k: getattr(job, k) for k in keys}, algorithms=list(names), lr_grid=lr_grid(job),
                tuning_seeds=tuning_seeds(job), tuning_rule=TUNING_RULE, plan=job.plan().to_json(),
                ratios=list(PAPER_RATIOS), targets=list(DEFAULT_TARGETS), families=list(FAMILIES),
                client_optimizer="adamw", divergence_multiple=DIVERGENCE_MULTIPLE)


def finetune_job(job: LLMClaimsJob, seed: int, algorithm: str, lr: float, rounds: int) -> FinetuneJob:
    """The ``fslora finetune`` job of one run (its data, budgets and config helpers are reused).

    Parameters
    ----------
    job : LLMClaimsJob
    seed : int
    algorithm : str
    lr : float
    rounds : int

    Returns
    -------
    FinetuneJob
    """
    return FinetuneJob(model=job.model, rank=job.rank, alpha=job.lora_alpha, clients=job.clients,
                       ratios=tuple(PAPER_RATIOS), rounds=rounds, local_steps=job.local_steps,
                       lr=lr, batch_size=job.batch_size, examples_per_client=job.examples_per_client,
                       dirichlet_alpha=job.dirichlet_alpha, eval_per_family=job.eval_per_family,
                       eval_every=rounds, threads=job.threads, seed=seed, algorithm=algorithm,
                       families=tuple(FAMILIES))


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


def run_one(layers, tok, job, seed: int, algorithm_name: str, lr: float, *, with_accuracy: bool,
            initial: dict, rounds: int | None = None, log=print) -> dict:
    """One federated run; returns its record (``claim_records.check_run``'s fields).

    Every algorithm starts from the same model (B random, A = 0, so W = W0), so the untrained model's
    held-out loss is measured once per seed (``initial``). A run whose held-out loss is not finite or
    exceeds DIVERGENCE_MULTIPLE times the initial one, or that fails numerically, is marked diverged
    with its round and reason.

    Parameters
    ----------
    layers : LoraLayers
        The model's LoRA layers.
    tok : tokenizer
    job : LLMClaimsJob
    seed : int
    algorithm_name : str
    lr : float
        The client learning rate.
    with_accuracy : bool
        Also greedy exact-match accuracy per family after the last round.
    rounds : int or None
        Rounds of this run (None: ``job.rounds``).
    initial : dict
        ``{seed: held-out loss}`` of the untrained model (filled on first use).
    log : callable, default print
        Progress messages.

    Returns
    -------
    dict
    """
    import numpy as np

    from .federated import ModelShapes, TorchClients, global_factors
    from .finetune import build_data, make_config
    from .task import InstructionTask, evaluate
    run_job = finetune_job(job, seed, algorithm_name, lr, job.rounds if rounds is None else rounds)
    task, held, _ = build_data(run_job, tok)
    held_task = InstructionTask(tok, [held], job.batch_size)
    config = make_config(run_job, layers)
    shapes = ModelShapes(layers, task.client_sizes)
    algorithm = get_algorithm(algorithm_name)
    state, uploaded = algorithm.init(shapes, config), 0
    if seed not in initial:   # from FSLoRA's start whichever algorithm runs first: a resumed run measures the same
        start = get_algorithm("fslora").init(shapes, config)
        layers.install(global_factors("fslora", start, config, shapes.layer_shapes), trainable=False)
        initial[seed] = heldout_loss(layers.model, held_task)
    run = {"algorithm": algorithm_name, "seed": seed, "lr": lr, "budgets": [int(k) for k in config.budgets],
           "rounds": [0], "upload_floats": [0], "heldout": [initial[seed]], "accuracy": None, "diverged": None,
           "seconds": 0.0}
    t0 = time.perf_counter()
    for t in range(config.rounds):
        try:
            state, _, uploads = run_round(TorchClients(algorithm, layers, task), state, shapes, config, t)
            uploaded += sum(u.upload_floats for u in uploads)
            if t + 1 < config.rounds:
                continue
            layers.install(global_factors(algorithm_name, state, config, shapes.layer_shapes), trainable=False)
            loss = heldout_loss(layers.model, held_task)
        except (ArithmeticError, np.linalg.LinAlgError) as exc:   # numerical failures (FloatingPointError included)
            run["diverged"] = {"round": t + 1, "reason": f"{type(exc).__name__}: {exc}"[:200]}
            break
        if not math.isfinite(loss) or loss > DIVERGENCE_MULTIPLE * initial[seed]:
            run["diverged"] = {"round": t + 1, "reason": f"held-out loss {loss!r} > {DIVERGENCE_MULTIPLE:g} x initial"}
            break
        run["rounds"].append(t + 1)
        run["upload_floats"].append(int(uploaded))
        run["heldout"].append(loss)
        if with_accuracy:
            run["accuracy"] = evaluate(layers.model, tok, held)["accuracy"]
        log(f"seed {seed} {algorithm_name} lr {lr:g}: held-out loss {loss:.4f} ({time.perf_counter() - t0:.0f} s)")
    if not with_accuracy and run["diverged"] is None:
        run["accuracy"] = {}
    run["seconds"] = time.perf_counter() - t0
    return run


class _Model:
    """The model, loaded on first use (a run with nothing left to compute never loads it)."""

    def __init__(self, job):
        self.job, self.layers, self.tok, self.initial = job, None, None, {}

    def run(self, seed, algorithm, lr, with_accuracy, rounds=None):
        if self.layers is None:
            import torch

            from .finetune import setup_torch
            from .models import load_model
            from .peft_layers import LoraLayers, add_lora
            setup_torch(self.job.threads)
            model, self.tok = load_model(self.job.model, dtype=torch.float32, seed=0)
            self.layers = LoraLayers(add_lora(model, self.job.rank, self.job.lora_alpha, list(DEFAULT_TARGETS)))
        return run_one(self.layers, self.tok, self.job, seed, algorithm, lr, with_accuracy=with_accuracy,
                       initial=self.initial, rounds=rounds, log=lambda m: print(m, flush=True))


def choose_steps(tuning: dict, names, grid, seeds) -> dict:
    """Apply :data:`TUNING_RULE` to the tuning runs.

    Parameters
    ----------
    tuning : dict
        ``{seed: {"algorithm@lr": run}}``.
    names : list of str
    grid : list of float
    seeds : list of int

    Returns
    -------
    dict
        ``{algorithm: {"chosen": lr, "losses": {lr: mean final held-out loss or None if any diverged},
        "all_diverged": bool, "edge": bool}}``; ``edge`` is true when the chosen step is the grid's first or last
        value of a grid of two or more (a better step may lie beyond the grid: the report says so).
    """
    out = {}
    for a in names:
        losses = {}
        for lr in grid:
            runs = [tuning[s][f"{a}@{lr!r}"] for s in seeds]
            ok = all(r["diverged"] is None for r in runs)
            losses[repr(lr)] = sum(r["heldout"][-1] for r in runs) / len(runs) if ok else None
        finite = [(v, float(k)) for k, v in losses.items() if v is not None]
        chosen = min(finite)[1] if finite else min(grid)
        edge = bool(finite) and len(grid) > 1 and chosen in (min(grid), max(grid))
        out[a] = {"chosen": chosen, "losses": losses, "all_diverged": not finite, "edge": edge}
    return out


def differences(seed_runs: dict, seeds, names) -> dict:
    """Per baseline, per-seed log(L_fslora / L_baseline) of the final held-out loss.

    Parameters
    ----------
    seed_runs : dict
        ``{seed: {algorithm: run}}``.
    seeds : list of int
    names : list of str

    Returns
    -------
    dict
        ``{baseline: [d_s]}``; None where either run diverged.
    """
    out = {}
    for b in (n for n in names if n in BASELINES):
        ds = []
        for s in seeds:
            f, r = seed_runs[s]["fslora"], seed_runs[s][b]
            ds.append(None if f["diverged"] or r["diverged"] else math.log(f["heldout"][-1] / r["heldout"][-1]))
        out[b] = ds
    return out


def status(plan: SequentialPlan, seed_runs: dict, names) -> dict:
    """The plan's status on the complete seeds 0..n-1 (a diverged run stalls the plan, stated).

    Parameters
    ----------
    plan : SequentialPlan
    seed_runs : dict
        ``{seed: {algorithm: run}}`` of complete seeds.
    names : list of str

    Returns
    -------
    dict
        :func:`llm_bridge.sequential.look_status`'s result.
    """
    n = 0
    while n in seed_runs:
        n += 1
    d = differences(seed_runs, list(range(n)), names)
    bad = sorted({s for ds in d.values() for s, v in enumerate(ds) if v is None})
    if bad:
        return {"status": "inconclusive", "stopped": False, "n_seeds": n, "look": 0, "next_seeds": None,
                "reason": f"diverged runs at seeds {bad}: the paired tests need every run; the plan cannot look"}
    return look_status(plan, d)


def _read_plan(path):
    return read_json_file(path, "plan file", max_bytes=1 << 20, max_depth=16) if os.path.exists(path) else None


def run_llm_claims(job: LLMClaimsJob, out: str, *, resume: bool = False) -> int:
    """Run the next step of the declared plan for claim 1 on the LM ``job`` names; write the records and report.

    Parameters
    ----------
    job : LLMClaimsJob
        Validated first.
    out : str
        The output directory (plan.json, tuning/, seeds/, report.json, report.md).
    resume : bool, default False
        Reload the records in ``out`` (of the same config) and continue the plan from them.

    Returns
    -------
    int
        1 if the claim is not supported, else 0 (``inconclusive`` while the plan has not stopped).
    """
    names = job.validate()
    plan, grid, tseeds = job.plan(), lr_grid(job), tuning_seeds(job)
    prepare_output_dir(out)
    check_output_names(out, OUTPUTS, directories=list(records.KINDS.values()))
    config = base_config(job, names)
    plan_path = os.path.join(out, "plan.json")
    if not resume and any(os.path.exists(os.path.join(out, p)) for p in ["plan.json", *records.KINDS.values()]):
        raise ValueError(f"--out {out} already holds a plan or records: pass --resume to continue them, or another --out")
    recorded = _read_plan(plan_path) if resume else None
    if recorded is not None and recorded != records.canonical(config):
        raise ValueError(f"--resume: {plan_path} declares a different plan "
                         f"({records.config_difference(recorded, records.canonical(config))}); use another --out")
    write_json(plan_path, config)   # declared before any run
    start, model = time.perf_counter(), _Model(job)

    tuning_config = dict(config, kind="tuning")
    keys = [f"{a}@{lr!r}" for a in names for lr in grid]
    tuning = records.load_records(out, "tuning", tuning_config, keys) if resume else {}
    todo = [(s, k) for s in tseeds for k in keys if k not in tuning.get(s, {})] if job.looks else []
    print(f"claims --llm: tuning {sum(len(r) for r in tuning.values())} runs reused, {len(todo)} to run", flush=True)
    for s, k in todo:
        a, lr = k.split("@")
        tuning.setdefault(s, {})[k] = model.run(s, a, float(lr), with_accuracy=False,
                                                rounds=job.tuning_rounds or job.rounds)
        records.write_record(out, "tuning", tuning_config, s, tuning[s])
    if any(k not in tuning.get(s, {}) for s in tseeds for k in keys):   # --looks 0 on an unfinished tuning
        state = {"status": "inconclusive", "stopped": False, "n_seeds": 0, "look": 0, "next_seeds": None,
                 "reason": "the step tuning has not finished: no evaluation seed can run"}
        paths = write_report(out, config, None, tuning, {}, state, names, seconds=time.perf_counter() - start)
        print(f"\nstatus: {state['status']} ({state['reason']}); wrote " + ", ".join(paths))
        return 0
    steps = choose_steps(tuning, names, grid, tseeds)

    eval_config = dict(config, kind="evaluation", lrs={a: steps[a]["chosen"] for a in names})
    seed_runs = records.load_records(out, "evaluation", eval_config, names) if resume else {}
    complete = {s: r for s, r in seed_runs.items() if set(r) == set(names)}
    state, looks_done = status(plan, complete, names), 0
    print(f"claims --llm: {len(complete)} complete seeds reused; {state['reason']}", flush=True)
    while not state["stopped"] and state["next_seeds"] is not None and looks_done < job.looks:
        for s in range(state["next_seeds"]):
            for a in names:
                if a not in seed_runs.get(s, {}):
                    seed_runs.setdefault(s, {})[a] = model.run(s, a, eval_config["lrs"][a], with_accuracy=True)
                    records.write_record(out, "evaluation", eval_config, s, seed_runs[s])
        complete = {s: r for s, r in seed_runs.items() if set(r) == set(names)}
        state, looks_done = status(plan, complete, names), looks_done + 1
        print(f"claims --llm: {state['reason']}", flush=True)
    partial = sorted(s for s in seed_runs if s not in complete)
    if partial:
        state = dict(state, reason=state["reason"] + f"; seeds {partial} unfinished (not used)")
    paths = write_report(out, config, steps, tuning, complete, state, names,
                         seconds=time.perf_counter() - start)
    print(f"\nstatus: {state['status']} ({state['reason']}); wrote " + ", ".join(paths))
    return 1 if state["status"] == NOT_SUPPORTED else 0
