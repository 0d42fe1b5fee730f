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
    """(seconds since this process started, CPU seconds it has used) from Linux /proc; (-1, -1)
    elsewhere. Read on entry to a handler, this is the ClientApp's start-up cost."""
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
    """Report this node's partition-id and prepare the job (fails here, by name, if it cannot run)."""
    pid, _ = partition(context.node_config)
    settings = Settings.from_run_config(context.run_config)
    t0, data = time.perf_counter(), None
    if settings.job == "simulate":
        data = _job(settings).prepare(settings.args, context.node_config, pid)
    else:
        _job(settings).prepare(settings.args)
    return Message(node_reply(context.node_config, time.perf_counter() - t0, data), reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the plan in ``msg`` and reply with the upload."""
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
