"""Federated fine-tuning of a real LLM's LoRA layers: the loop behind ``fslora finetune``.

Round t: the reference's ``configure_round`` draws the plans (FSLoRA's sketches), each client
trains its rank-k_i copy on the torch model, the reference's ``aggregate`` updates the server
state; the rounds, resume and per-round checkpoints are the reference's own driver loop
(``fslora_ref.federation.run``), with the bridge's recorder (recorder.py). The global model is
evaluated before training and every ``eval_every`` rounds; the run writes history.json,
curves.png, a checkpoint after every round and the final adapter in PEFT format (``adapter/``).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time

import numpy as np

from fslora_ref.algorithms import get_algorithm
from fslora_ref.config import FedConfig, budgets_from_ratios
from fslora_ref.federation import checkpoint_path, run, run_round
from fslora_ref.outputs import atomic_directory, prepare_output_dir

from . import commonsense
from . import data as data_mod
from .device import resolve_device, torch_dtype
from .federated import ModelShapes, TorchClients, exportable_factors
from .job import FinetuneJob
from .models import load_model
from .peft_layers import LoraLayers, add_lora
from .recorder import FinetuneRecorder, write_outputs
from .task import InstructionTask, evaluate


def setup_torch(threads: int):
    """Deterministic torch with an explicit thread count.

    No global RNG is ever used: LoRA init and batches come from fslora_ref's seeded streams,
    dropout is 0.

    Parameters
    ----------
    threads : int
        torch CPU threads.
    """
    import torch

    from fslora_ref.validation import check_threads
    torch.set_num_threads(check_threads("threads", threads))  # 100000 threads crashed torch
    torch.use_deterministic_algorithms(True)


def build_data(job: FinetuneJob, tok):
    """The training task and held-out set, from the synthetic families or commonsense JSON files.

    Parameters
    ----------
    job : FinetuneJob
        The job (its data fields and seed).
    tok : tokenizer
        The model's tokenizer.

    Returns
    -------
    task : InstructionTask
        The clients' training data.
    held : list of Example
        The held-out examples.
    info : dict
        What the history records about the data (scoring, family counts per client, ...).
    """
    clients, train = client_examples(job)
    held, evals = held_out_examples(job, warn_also=train)
    info = data_info(job, train, evals, held, family_counts(clients))
    return InstructionTask(tok, clients, job.batch_size), held, info


def client_examples(job: FinetuneJob) -> tuple:
    """Every client's training examples: the commonsense files split by the job's Dirichlet
    partition, or the synthetic families' per-client draws.

    Parameters
    ----------
    job : FinetuneJob
        The job (its data fields and seed).

    Returns
    -------
    clients : list of list of Example
        One list per client (N lists).
    train : list of CommonsenseFile
        The parsed training files (empty for the synthetic task).
    """
    if job.train_json:
        train = commonsense.load_files(list(job.train_json), "--train-json")
        return data_mod.partition_pools(commonsense.pools(train), job.clients, job.dirichlet_alpha, job.seed), train
    families = list(job.families)
    return data_mod.dirichlet_partition(job.clients, families, job.examples_per_client, job.dirichlet_alpha,
                                        job.seed), []


def held_out_examples(job: FinetuneJob, warn_also=()) -> tuple:
    """The server's held-out set: a sample of the ``--eval-json`` files, or the synthetic families'.

    Parameters
    ----------
    job : FinetuneJob
        The job.
    warn_also : list of CommonsenseFile
        Training files whose contradictory records are reported with the held-out files'.

    Returns
    -------
    held : list of Example
        The held-out examples.
    evals : list of CommonsenseFile
        The parsed held-out files (empty for the synthetic task).
    """
    if not job.train_json:
        return data_mod.held_out_set(list(job.families), job.eval_per_family, job.seed), []
    evals = commonsense.load_files(list(job.eval_json or []), "--eval-json", unique_families=True)
    if not evals:
        raise ValueError("--eval-json must name at least one commonsense file when --train-json is given")
    for line in commonsense.contradiction_warnings(list(warn_also) + evals):
        print(line, file=sys.stderr)
    return commonsense.held_out_sample(evals, job.eval_per_family, job.seed), evals


def family_counts(clients) -> list:
    """Per client, how many of its examples each family has.

    Parameters
    ----------
    clients : list of list of Example
        The clients' training examples.

    Returns
    -------
    list of dict
        ``[{family: count}]``, families sorted.
    """
    return [{f: sum(e.family == f for e in c) for f in sorted({e.family for e in c})} for c in clients]


def data_info(job: FinetuneJob, train, evals, held, counts) -> dict:
    """What the history records about the data.

    Parameters
    ----------
    job : FinetuneJob
        The job.
    train, evals : list of CommonsenseFile
        The training and held-out files (empty for the synthetic task; ``train`` also when the
        clients' data are node-local).
    held : list of Example
        The held-out set.
    counts : list of dict
        :func:`family_counts` of the clients' data.

    Returns
    -------
    dict
    """
    if job.train_json:
        info = commonsense.run_info(train, evals, held)
    else:
        info = {"scoring": data_mod.SCORING, "constant_answer_rate": data_mod.constant_answer_rate(held)}
    info["client_family_counts"] = [dict(c) for c in counts]
    return info


def make_config(job: FinetuneJob, layers) -> FedConfig:
    """The reference's FedConfig of ``job`` on the adapter ``layers``.

    The job fields in RECIPE_KEYS ride along in ``extra``, so a checkpoint resumes only the
    same recipe.

    Parameters
    ----------
    job : FinetuneJob
        The job.
    layers : LoraLayers
        The adapter (its rank r and scaling s).

    Returns
    -------
    FedConfig
    """
    r = layers.rank
    if job.budgets is not None:
        if len(job.budgets) != job.clients:
            raise ValueError(f"--budgets must list {job.clients} values (one per client), got {len(job.budgets)}")
        for i, k in enumerate(job.budgets):
            if not 1 <= k <= r:
                raise ValueError(f"--budgets[{i}] = {k} must be in [1, {r}] (the adapter's rank r)")
        budgets = list(job.budgets)
    else:
        budgets = budgets_from_ratios(r, job.ratios, job.clients)
    extra = {k: v for k, v in job.to_dict().items() if k in RECIPE_KEYS}
    return FedConfig(rank=r, budgets=budgets, local_steps=job.local_steps, lr=job.lr, rounds=job.rounds,
                     seed=job.seed, lora_scaling=layers.scaling, client_optimizer=job.client_optimizer,
                     weight_decay=job.weight_decay, client_fraction=job.client_fraction,
                     server_optimizer=job.server_optimizer,
                     server_lr=1.0 if job.server_lr is None else job.server_lr, extra=extra)


# what else, besides FedConfig, must agree for a checkpoint to be resumed
RECIPE_KEYS = ("model", "algorithm", "alpha", "rslora", "targets", "families", "examples_per_client",
               "dirichlet_alpha", "batch_size", "eval_per_family", "eval_every", "train_json", "eval_json", "dtype", "threads")  # threads: float rounding


def run_identity(layers, shapes, task, held) -> dict:
    """What besides the config defines a bridge run.

    Parameters
    ----------
    layers : LoraLayers
        The adapter's layers (their names).
    shapes : ModelShapes
        Layer shapes and client sizes.
    task : InstructionTask
        The clients' tokenised training data.
    held : list of Example
        The held-out set.

    Returns
    -------
    dict
        The layer names and shapes, the clients' sizes and a SHA-256 of the training data and
        the held-out set.
    """
    data = json.dumps([task.clients, [(e.family, e.prompt, e.answer) for e in held]]).encode()
    return {"layers": list(layers.names), "layer_shapes": [list(s) for s in shapes.layer_shapes],
            "client_sizes": list(shapes.client_sizes), "data_sha256": hashlib.sha256(data).hexdigest()}


def finetune(job: FinetuneJob, out: str, *, resume: bool = False, stop_after: int | None = None,
             round_fn=None, node_data=None, run_fn=None) -> dict:
    """Run (or resume) the federated fine-tuning ``job`` into the directory ``out``.

    Parameters
    ----------
    job : FinetuneJob
        What to run (checked beforehand by :func:`llm_bridge.job.check_run`).
    out : str
        Output directory: history.json, curves.png, checkpoint-<algorithm>.npz, adapter/.
    resume : bool
        Continue from the checkpoint in ``out`` (only the very same job).
    stop_after : int or None
        Stop after this many rounds (a checkpointed, unfinished run; tests of --resume).
    round_fn : callable or None
        How one round runs (``fslora_ref.federation.run_round``'s signature; the Flower app
        trains the clients on remote nodes through it).
    node_data : NodeData or None
        The clients' data are node-local (:class:`llm_bridge.node_data.NodeData`: what each node
        announced of its partition): the training data are never read here, only the held-out
        set; the clients' sizes and family counts are the announced ones. Needs ``round_fn`` or
        ``run_fn`` (the clients train elsewhere).
    run_fn : callable or None
        Runs the rounds, with :func:`fslora_ref.federation.run`'s signature and result (the
        default; the Flower ServerApp passes one whose rounds Flower's ``Strategy.start`` drives,
        evaluating with this run's recorder).

    Returns
    -------
    dict
        The history, also written to ``<out>/history.json``.

    Examples
    --------
    One round of the random tiny model (no download) on one synthetic family:

    >>> import os, tempfile
    >>> from llm_bridge.job import FinetuneJob
    >>> from llm_bridge.finetune import finetune
    >>> job = FinetuneJob(model="tiny", rank=4, clients=2, rounds=1, local_steps=1, batch_size=2,
    ...                   families=("addition",), examples_per_client=8, eval_per_family=2)
    >>> out = os.path.join(tempfile.mkdtemp(), "run")
    >>> history = finetune(job, out)
    >>> len(history["rounds"]), [e["round"] for e in history["eval"]], history["adapter"]["exact"]
    (1, [0, 1], True)
    >>> sorted(f for f in os.listdir(out) if not f.startswith(("checkpoint", ".")))
    ['adapter', 'curves.png', 'history.json']
    """
    import torch
    prepare_output_dir(out, "--out")  # before the model is loaded
    setup_torch(job.threads)
    dtype, device = torch_dtype(job.dtype), resolve_device(job.device)
    t_start = time.perf_counter()
    model, tok = load_model(job.model, dtype=dtype, seed=job.seed, device=device)
    peft_model = add_lora(model, job.rank, job.alpha, list(job.targets), job.rslora)
    layers = LoraLayers(peft_model)
    if node_data is None:
        task, held, info = build_data(job, tok)
        shapes = ModelShapes(layers, task.client_sizes)
        identity = run_identity(layers, shapes, task, held)
    else:   # the server holds no client data: the held-out set only, the clients' figures as announced
        if round_fn is None and run_fn is None:
            raise ValueError("node-local client data need a round_fn or run_fn that trains the clients where the "
                             "data are")
        task = None
        held, evals = held_out_examples(job)
        info = dict(data_info(job, [], evals, held, node_data.family_counts), node_local=True)
        shapes = ModelShapes(layers, list(node_data.sizes))
        identity = node_data.identity(layers, shapes, held)
    config = make_config(job, layers)
    algorithm = get_algorithm(job.algorithm)
    ckpt = checkpoint_path(out, algorithm.name)
    recorder = FinetuneRecorder(layers, tok, held, shapes, new_history(job, config, layers, info, shapes),
                                eval_every=job.eval_every, elem_bytes=torch.finfo(dtype).bits // 8, out=out)
    # the reference's driver loop: resume, a checkpoint after every round, divergence and error wrapping
    history = (run_fn or run)(TorchClients(algorithm, layers, task), shapes, config, checkpoint=ckpt, resume=resume,
                              stop_after=stop_after, identity=identity, round_fn=recorder.timed(round_fn or run_round),
                              recorder=recorder, on_round=recorder.after_round)
    state = recorder.final_state
    done = len(history["rounds"]) == config.rounds
    if done:
        pairs, exact = exportable_factors(algorithm, state, config)
        export_adapter(layers, pairs, config, os.path.join(out, "adapter"))
        history["adapter"] = {"path": os.path.join(out, "adapter"), "exact": exact}
        if job.verify_adapter:
            history["adapter"]["reload_eval"] = reload_and_evaluate(job, os.path.join(out, "adapter"), held)
    history["wall_seconds_this_process"] = time.perf_counter() - t_start
    write_outputs(out, history)
    return history


def new_history(job, config, layers, info, shapes) -> dict:
    """The bridge history before any round: what the run is, no rounds or evaluations yet.

    Parameters
    ----------
    job : FinetuneJob
        The job.
    config : FedConfig
        Its configuration.
    layers : LoraLayers
        The adapter.
    info : dict
        What :func:`build_data` recorded about the data.
    shapes : ModelShapes
        Layer shapes and client sizes.

    Returns
    -------
    dict
        With empty ``"rounds"`` and ``"eval"`` lists.
    """
    return {"config": config.to_json(), "algorithm": job.algorithm, "model": job.model,
            "layers": layers.names, "layer_shapes": [list(s) for s in shapes.layer_shapes],
            "lora_scaling": layers.scaling, "client_sizes": shapes.client_sizes, "data": info,
            "rounds": [], "eval": []}


def export_adapter(layers, pairs, config, path):
    """Save rank-r (B, A) as a PEFT adapter directory.

    Filled in a temp dir, then renamed; file and directory modes follow the umask.

    Parameters
    ----------
    layers : LoraLayers
        The adapter the factors are installed into.
    pairs : list of tuple of ndarray
        ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l).
    config : FedConfig
        The run's configuration (rank, scaling).
    path : str
        The adapter directory to write.
    """
    from fslora_ref.lora import LayerFactors
    coeff = config.lora_scaling * np.ones(config.rank)
    layers.install([LayerFactors(B, A, coeff) for B, A in pairs], trainable=False)
    with atomic_directory(path) as tmp:
        layers.model.save_pretrained(tmp)


def reload_and_evaluate(job, adapter_path, held) -> dict:
    """Load the base model afresh, attach the saved adapter with PeftModel.from_pretrained,
    and evaluate: this must reproduce the run's final evaluation.

    Parameters
    ----------
    job : FinetuneJob
        The job (model, dtype, device, seed).
    adapter_path : str
        The saved adapter directory.
    held : list of Example
        The held-out set.

    Returns
    -------
    dict
        :func:`llm_bridge.task.evaluate`'s result.
    """
    from peft import PeftModel

    from .model_files import check_adapter_dir
    check_adapter_dir(adapter_path)
    model, tok = load_model(job.model, dtype=torch_dtype(job.dtype), seed=job.seed, device=resolve_device(job.device))
    peft_model = PeftModel.from_pretrained(model, adapter_path)
    peft_model.eval()
    return evaluate(peft_model, tok, held)
