"""ClientApp side of `fslora flower finetune`: the bridge's client_update on this node.

Flower starts a fresh ClientApp process for every message, so each round this node loads the
model (SmolLM2 from the converted safetensors copy in its cache, memory-mapped; the gguf is
converted once, during discovery), adds the LoRA adapter and trains its plan on its data:

- node-local (``data="/path/partition.json"`` in the node config; llm_bridge/node_data.py): the
  node reads only its own partition file, checked during discovery to be this partition-id's of
  this job's recipe, and announces its size, family counts and sha256; the cost of a message does
  not depend on N and the server never sees the examples;
- otherwise the node derives its partition from the job's recipe (reading every ``--train-json``
  file at the same path as the server).

A node may announce its own device and dtype (``device="cuda:1" dtype="bfloat16"``); the job's are the
default. A node's own dtype changes its numbers (a run equals the in-process one only in the job's).
"""
from __future__ import annotations

import time

import numpy as np


def node_settings(job, node_config) -> tuple:
    """The device and dtype this node trains with: its node config's, else the job's.

    Parameters
    ----------
    job : FinetuneJob
        The run's job (the defaults).
    node_config : dict or None
        The SuperNode's --node-config (``device``, ``dtype`` optional).

    Returns
    -------
    device : str
        A device spec ("auto", "cpu", "cuda", "cuda:<i>").
    dtype : str
        One of ``llm_bridge.device.DTYPES``.

    Raises
    ------
    ValueError
        One line, for a dtype the bridge does not know or a malformed device.
    """
    from llm_bridge.device import DTYPES, check_device_spec
    node_config = node_config or {}
    dtype = str(node_config.get("dtype", job.dtype))
    if dtype not in DTYPES:
        raise ValueError(f"node config dtype={dtype!r} must be one of {list(DTYPES)}")
    device = str(node_config.get("device", job.device))
    check_device_spec(device)
    return device, dtype


def own_examples(job, node_config, client: int):
    """This node's training examples, from the partition file its node config names.

    Parameters
    ----------
    job : FinetuneJob
        The run's job (its recipe and number of clients).
    node_config : dict or None
        The SuperNode's --node-config (``data``, ``num-partitions``).
    client : int
        This node's partition-id.

    Returns
    -------
    list of Example or None
        None when the node config names no ``data`` file.

    Raises
    ------
    ValueError, FileNotFoundError
        One line naming the file, for a file that is not this client's of this job (see
        :func:`llm_bridge.node_data.load_partition_file`).
    """
    path = (node_config or {}).get("data")
    if not path:
        return None
    import os

    from llm_bridge.node_data import load_partition_file, recipe_digest
    n_clients = int(node_config["num-partitions"])
    if n_clients != job.clients:
        raise ValueError(f"this node has num-partitions={n_clients}, but the job has {job.clients} clients")
    return load_partition_file(os.path.abspath(os.path.expanduser(str(path))), client, n_clients, recipe_digest(job))


def prepare(job, node_config=None, client: int | None = None) -> dict:
    """Check the FinetuneJob can run on this node and say what the node announces of its data.

    Checks the job's fields, the model and, unless the node has its own partition file, the data
    files (the output directory is the server's), and fills the converted-model cache.

    Parameters
    ----------
    job : FinetuneJob
        The run's job.
    node_config : dict or None
        The SuperNode's --node-config.
    client : int or None
        This node's partition-id.

    Returns
    -------
    dict
        :func:`llm_bridge.node_data.announcement` of the node's own partition; {} without one.
    """
    job.validate()
    node_settings(job, node_config)
    examples = own_examples(job, node_config, client) if client is not None else None
    job.check_inputs(train=examples is None, held_out=examples is None)
    if job.model == "smollm2":
        from llm_bridge.models import smollm2_dir
        smollm2_dir()
    if examples is None:
        return {}
    from llm_bridge.node_data import announcement, recipe_digest
    return announcement(examples, recipe_digest(job))


def train(plan, meta, job, node_config, timing: dict):
    """Train ``plan`` on this node's data.

    Parameters
    ----------
    plan : ClientPlan
        What the server sent this client.
    meta : dict
        The plan's metadata (its ``round``).
    job : FinetuneJob
        The run's job.
    node_config : dict or None
        The SuperNode's --node-config (``data``, ``device``, ``dtype``).
    timing : dict
        Receives ``setup-seconds`` (model load and data).

    Returns
    -------
    upload : Upload
        The client's upload.
    dtype : type
        The float type to send it in (float64 for a float64 model, else float32: exact).
    """
    t0 = time.perf_counter()
    from llm_bridge.client import train_client
    from llm_bridge.device import resolve_device, torch_dtype
    from llm_bridge.finetune import build_data, make_config, setup_torch
    from llm_bridge.models import load_model
    from llm_bridge.peft_layers import LoraLayers, add_lora
    setup_torch(job.threads)
    device, dtype = node_settings(job, node_config)
    examples = own_examples(job, node_config, plan.client)
    model, tok = load_model(job.model, dtype=torch_dtype(dtype), seed=job.seed, device=resolve_device(device))
    layers = LoraLayers(add_lora(model, job.rank, job.alpha, list(job.targets), job.rslora))
    if examples is None:
        task, _, _ = build_data(job, tok)
    else:
        from llm_bridge.node_data import LocalTask
        from llm_bridge.task import InstructionTask
        task = LocalTask(InstructionTask(tok, [examples], job.batch_size), plan.client)
    config = make_config(job, layers)
    timing["setup-seconds"] = time.perf_counter() - t0
    upload = train_client(layers, task, plan, config, int(meta["round"]))
    return upload, (np.float64 if dtype == "float64" else np.float32)
