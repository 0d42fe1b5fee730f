"""ClientApp side of `fslora flower finetune`: the bridge's client_update on this node.

Flower starts a fresh ClientApp process for every message, so each round this node loads the
model (SmolLM2 from the converted safetensors copy in its cache, memory-mapped; the gguf is
converted once, during discovery), adds the LoRA adapter, derives its own data partition
from the job's recipe and trains its plan. A node may choose its own device with
``--node-config 'partition-id=1 num-partitions=4 device="cuda:1"'``; the job's --device is the default.
"""
from __future__ import annotations

import time

import numpy as np


def prepare(job) -> None:
    """Check the FinetuneJob can run on this node and fill the converted-model cache (the discovery query).

    Its fields, model and data files are checked; the output directory is the server's.

    Parameters
    ----------
    job : FinetuneJob
        The run's job.

    Raises
    ------
    ValueError, FileNotFoundError
        One line, for a bad field, model directory or data file.
    """
    job.validate()
    job.check_inputs()
    if job.model == "smollm2":
        from llm_bridge.models import smollm2_dir
        smollm2_dir()


def train(plan, meta, job, node_config, timing: dict):
    """Load the model, add the LoRA adapter, derive this client's data and train its plan.

    Parameters
    ----------
    plan : ClientPlan
        The client's plan (:func:`fslora_flower.records.record_to_plan`).
    meta : dict
        The plan's ConfigRecord (its ``round`` is read).
    job : FinetuneJob
        The run's job.
    node_config : Mapping
        The SuperNode's node config (an optional ``device`` overrides the job's).
    timing : dict
        Receives ``"setup-seconds"``: loading the model and the data.

    Returns
    -------
    upload : Upload
        The client's result of local training.
    dtype : type
        The float type to send it in: ``numpy.float64`` for a float64 model, else ``numpy.float32``.
    """
    t0 = time.perf_counter()
    from llm_bridge.client import train_client
    from llm_bridge.device import resolve_device, torch_dtype
    from llm_bridge.finetune import build_data, make_config, setup_torch
    from llm_bridge.models import load_model
    from llm_bridge.peft_layers import LoraLayers, add_lora
    setup_torch(job.threads)
    device = resolve_device(str(node_config.get("device", job.device)))
    model, tok = load_model(job.model, dtype=torch_dtype(job.dtype), seed=job.seed, device=device)
    layers = LoraLayers(add_lora(model, job.rank, job.alpha, list(job.targets), job.rslora))
    task, _, _ = build_data(job, tok)
    config = make_config(job, layers)
    timing["setup-seconds"] = time.perf_counter() - t0
    upload = train_client(layers, task, plan, config, int(meta["round"]))
    return upload, (np.float64 if job.dtype == "float64" else np.float32)
