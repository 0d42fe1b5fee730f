"""The ClientApp: answers the discovery query, trains the plans it is sent and evaluates the
global model on its own data.

One component serves both jobs of the run config: the NumPy reference problems
(numpy_client.py, no torch import) and the LLM bridge (llm_client.py). Each reply carries only
the block the server rule reads, the local losses and the client's timings.
"""
from __future__ import annotations

import os
import time

from flwr.app import Context, Message, MetricRecord
from flwr.clientapp import ClientApp

from .discovery import node_reply, partition
from .records import TIMING, record_to_plan, upload_to_record
from .settings import Settings

app = ClientApp()


def process_clock() -> tuple[float, float]:
    """How long this process has existed and how much CPU it has used, from Linux /proc.

    Read on entry to a handler, this is the ClientApp's start-up cost (Flower starts a fresh
    ClientApp process for every message).

    Returns
    -------
    wall : float
        Seconds since this process started; -1.0 where /proc cannot be read.
    cpu : float
        CPU seconds (user + system) it has used; -1.0 where /proc cannot be read.
    """
    try:
        with open("/proc/self/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        tick = os.sysconf("SC_CLK_TCK")
        return max(0.0, uptime - int(fields[19]) / tick), (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError, IndexError):
        return -1.0, -1.0


def _job(settings):
    if settings.job == "simulate":
        from . import numpy_client as job
    else:
        from . import llm_client as job
    return job


@app.query()
def query(msg: Message, context: Context) -> Message:
    """Answer the discovery query: this node's partition-id, after preparing the job.

    Preparing builds (or checks) the node's data and fills the converted-model cache, so a node
    that cannot run the job fails here, by name, rather than in round 1.

    Parameters
    ----------
    msg : flwr.app.Message
        The server's QUERY.
    context : flwr.app.Context
        The node config (partition-id, num-partitions, ...) and the run config.

    Returns
    -------
    flwr.app.Message
        The reply, :func:`fslora_flower.discovery.node_reply`.

    Raises
    ------
    ValueError
        If the node config or run config is invalid or the job cannot run on this node (Flower
        sends the server an error reply).
    """
    pid, _ = partition(context.node_config)
    settings = Settings.from_run_config(context.run_config)
    t0 = time.perf_counter()
    data = _job(settings).prepare(settings.args, context.node_config, pid)   # finetune: what its own data are
    return Message(node_reply(context.node_config, time.perf_counter() - t0, data or {}), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the plan in ``msg`` and reply with the upload.

    Parameters
    ----------
    msg : flwr.app.Message
        A TRAIN message (:func:`fslora_flower.records.plan_to_record`).
    context : flwr.app.Context
        The node config and the run config.

    Returns
    -------
    flwr.app.Message
        The reply (:func:`fslora_flower.records.upload_to_record`) with a MetricRecord
        ``"fslora.timing"``: process-seconds and process-cpu-seconds at entry (:func:`process_clock`),
        handler-seconds, and the bridge's own timings.

    Raises
    ------
    ValueError
        If the plan is for another client than this node's partition-id.
    DivergenceError
        If local training diverged (the server stops the run as in process).
    """
    started, cpu = process_clock()
    pid, _ = partition(context.node_config)
    settings = Settings.from_run_config(context.run_config)
    plan, meta = record_to_plan(msg.content)
    if plan.client != pid:
        raise ValueError(f"this node is partition-id {pid} but was sent the plan of client {plan.client}")
    t0, timing = time.perf_counter(), {}
    if settings.job == "simulate":
        upload, dtype = _job(settings).train(plan, meta, settings.args, context.node_config)
    else:
        upload, dtype = _job(settings).train(plan, meta, settings.args, context.node_config, timing)
    content = upload_to_record(upload, meta, dtype)
    content[TIMING] = MetricRecord({"process-seconds": started, "process-cpu-seconds": cpu,
                                    "handler-seconds": time.perf_counter() - t0,
                                    **timing})
    return Message(content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the global model in ``msg`` on this node's own data (simulate jobs; evaluation.py).

    Parameters
    ----------
    msg : Message
        An EVALUATE message of the ServerApp (the global weights and factors, or a probe).
    context : Context
        The node's context (its partition-id and data in ``node_config``).

    Returns
    -------
    Message
        The reply: this client's loss and gradients at the global model.
    """
    pid, _ = partition(context.node_config)
    settings = Settings.from_run_config(context.run_config)
    if settings.job != "simulate":
        raise ValueError("only `fslora flower simulate` evaluates on the clients (finetune evaluates on the server)")
    return Message(_job(settings).evaluate(msg.content, settings.args, context.node_config, pid), reply_to=msg)
