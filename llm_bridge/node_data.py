"""Node-local fine-tuning data: one client's training examples in a file of its own.

A Flower SuperNode of a finetune job names its file in its node config (``data="/data/partition.json"``);
``fslora flower finetune-partition <finetune options> --out DIR`` (or ``fslora flower finetune
--node-local``) writes one per client from the job's recipe: the same Dirichlet split of the
commonsense files (or of the synthetic families) as ``fslora finetune``, so a node-local run equals
the in-process one. A file is plain JSON (data, never code)::

    {"format": "fslora-finetune-partition-1", "client": 3, "n-clients": 8,
     "recipe": "<sha256 of the job's data recipe>",
     "examples": [{"family": "boolq", "prompt": "...", "target": "the correct answer is true"}, ...]}

The node checks that the file is client ``partition-id``'s of ``num-partitions`` clients of this
job's recipe and announces its size, family counts and sha256 (:func:`announcement`); the server
plans with those and never reads a client's examples (:class:`NodeData`). Importing this module
does not import torch.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from fslora_ref.safe_json import read_json_file

from .data import Example

FORMAT = "fslora-finetune-partition-1"
# the job fields the clients' training examples depend on (not the model: examples are text)
RECIPE_FIELDS = ("train_json", "families", "examples_per_client", "clients", "dirichlet_alpha", "seed")
MAX_FILE_BYTES = 1 << 30     # as commonsense.MAX_DATA_BYTES: one client's share of those files
MAX_DEPTH = 4                # {"examples": [{...}]}


def recipe_digest(job) -> str:
    """sha256 of the fields of ``job`` that determine the clients' examples.

    Parameters
    ----------
    job : FinetuneJob
        The job.

    Returns
    -------
    str
        64 hex digits.
    """
    recipe = {k: job.to_dict()[k] for k in RECIPE_FIELDS}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def examples_digest(examples) -> str:
    """sha256 of a client's examples (family, prompt, target each, in order).

    Parameters
    ----------
    examples : list of Example
        A client's training examples.

    Returns
    -------
    str
        64 hex digits.
    """
    rows = [[e.family, e.prompt, e.target] for e in examples]
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode()).hexdigest()


def write_partition_files(job, directory: str, private: bool = False) -> list:
    """One partition file per client of ``job`` (reads its ``--train-json`` files once).

    Parameters
    ----------
    job : FinetuneJob
        The job (checked by the caller).
    directory : str
        Where to write: ``partition-<i>.json``, or with ``private`` ``node-<i>/partition.json``, each
        ``node-<i>`` directory readable by the user only (mode 0700), one per SuperNode.
    private : bool, default False
        One private directory per node.

    Returns
    -------
    list of str
        The N file paths, client order.
    """
    from .finetune import client_examples
    clients, _ = client_examples(job)
    for i, exs in enumerate(clients):
        if not exs:
            raise ValueError(f"client {i} has no training examples; raise per-client data or lower --clients")
    digest = recipe_digest(job)
    os.makedirs(directory, exist_ok=True)
    paths = []
    for i, exs in enumerate(clients):
        where = directory
        if private:
            where = os.path.join(directory, f"node-{i}")
            os.makedirs(where, mode=0o700, exist_ok=True)
            os.chmod(where, 0o700)
        path = os.path.join(where, "partition.json" if private else f"partition-{i}.json")
        doc = {"format": FORMAT, "client": i, "n-clients": len(clients), "recipe": digest,
               "examples": [{"family": e.family, "prompt": e.prompt, "target": e.target} for e in exs]}
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, ensure_ascii=False)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def load_partition_file(path: str, client: int, n_clients: int, digest: str) -> list:
    """The examples in ``path``, checked to be client ``client``'s of ``n_clients`` of the recipe ``digest``.

    Parameters
    ----------
    path : str
        A partition file (see the module docstring).
    client : int
        This node's partition-id.
    n_clients : int
        The job's number of clients (the node's num-partitions).
    digest : str
        :func:`recipe_digest` of the job.

    Returns
    -------
    list of Example
        The client's training examples, file order.

    Raises
    ------
    ValueError, FileNotFoundError
        One line naming the file and what is wrong with it.
    """
    what = f"node data {path}"
    try:
        doc = read_json_file(path, "node data", max_bytes=MAX_FILE_BYTES, max_depth=MAX_DEPTH)
    except (OSError, ValueError) as exc:
        raise type(exc)(" ".join(str(exc).split())) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f"{what}: not an fslora finetune partition file (format {found!r}, expected {FORMAT!r}; "
                         f"write one with `fslora flower finetune-partition`)")
    for key, want in (("client", client), ("n-clients", n_clients)):
        got = doc.get(key)
        if isinstance(got, bool) or not isinstance(got, int):
            raise ValueError(f"{what}: {key!r} must be an integer, got {got!r}")
    if doc["client"] != client:
        raise ValueError(f"{what} holds client {doc['client']}, but this node is partition-id {client}")
    if doc["n-clients"] != n_clients:
        raise ValueError(f"{what} is one of {doc['n-clients']} partitions, but the job has {n_clients} clients")
    if doc.get("recipe") != digest:
        raise ValueError(f"{what} was made for another job (train-json, families, examples-per-client, clients, "
                         f"dirichlet-alpha or seed differ)")
    rows = doc.get("examples")
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{what}: 'examples' must be a non-empty list")
    examples = []
    for j, row in enumerate(rows):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("family", "prompt", "target")):
            raise ValueError(f"{what}, example {j}: needs string fields 'family', 'prompt', 'target'")
        examples.append(Example(row["family"], row["prompt"], row["target"]))
    return examples


def announcement(examples, digest: str) -> dict:
    """What a node tells the server about its data (flat values, for a Flower ConfigRecord).

    Parameters
    ----------
    examples : list of Example
        The node's training examples.
    digest : str
        The recipe its file was made from.

    Returns
    -------
    dict
        ``examples`` (count), ``family-counts`` (JSON ``{family: count}``), ``data-sha256``, ``data-recipe``.
    """
    counts = {f: sum(e.family == f for e in examples) for f in sorted({e.family for e in examples})}
    return {"examples": len(examples), "family-counts": json.dumps(counts), "data-sha256": examples_digest(examples),
            "data-recipe": digest}


@dataclass(frozen=True)
class NodeData:
    """What the server knows of node-local client data: the announcements, client order.

    Parameters
    ----------
    sizes : tuple of int
        Each client's number of training examples (FlexLoRA's weights).
    family_counts : tuple of dict
        Each client's ``{family: count}``.
    digests : tuple of str
        Each client's :func:`examples_digest`.
    """

    sizes: tuple
    family_counts: tuple
    digests: tuple

    def identity(self, layers, shapes, held) -> dict:
        """What a checkpoint of a node-local run must match (as :func:`llm_bridge.finetune.run_identity`,
        the data digest made of the nodes' digests and the held-out set).

        Parameters
        ----------
        layers : LoraLayers
            The adapter's layers.
        shapes : ModelShapes
            Layer shapes and client sizes.
        held : list of Example
            The held-out set.

        Returns
        -------
        dict
        """
        data = json.dumps([list(self.digests), [(e.family, e.prompt, e.answer) for e in held]]).encode()
        return {"layers": list(layers.names), "layer_shapes": [list(s) for s in shapes.layer_shapes],
                "client_sizes": list(shapes.client_sizes), "data_sha256": hashlib.sha256(data).hexdigest(),
                "node_local": True}


class LocalTask:
    """An InstructionTask of one client, answering for that client's id only.

    Parameters
    ----------
    task : InstructionTask
        Built from ``[examples]`` (one client).
    client : int
        The client id the plans use.
    """

    def __init__(self, task, client: int):
        self.task, self.client = task, int(client)

    def _own(self, client) -> int:
        if int(client) != self.client:
            raise ValueError(f"this node holds the data of client {self.client}, not of client {client}")
        return 0

    def sample_batch(self, client, rng):
        """The one client's batch (``InstructionTask.sample_batch``), keyed by its own id.

        Parameters
        ----------
        client : int
            Must be this node's client.
        rng : numpy.random.Generator
            Its batch stream.

        Returns
        -------
        tuple
            ``(0, sorted row indices)``.
        """
        return self.task.sample_batch(self._own(client), rng)

    def loss(self, model, batch):
        """``InstructionTask.loss``.

        Parameters
        ----------
        model : torch.nn.Module
            The causal LM.
        batch : tuple
            What :meth:`sample_batch` returned.

        Returns
        -------
        torch.Tensor
        """
        return self.task.loss(model, batch)
