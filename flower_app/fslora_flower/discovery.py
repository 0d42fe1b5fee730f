"""Which Flower node is which fslora client.

Flower gives SuperNodes random node ids; a SuperNode started with
``--node-config "partition-id=i num-partitions=N"`` is client i. Before the first round the
server waits for N SuperNodes and sends each a QUERY; the ClientApp answers with its
partition-id and prepares its job (builds its data, fills the converted-model cache), so a
node that cannot run the job fails here, by name, rather than in round 1.
"""
from __future__ import annotations

import time
from importlib.metadata import version

from flwr.app import ConfigRecord, Message, MessageType, RecordDict

from .exchange import exchange
from .strategy import MissingClients

QUERY, NODE = "fslora.query", "fslora.node"


def versions() -> dict:
    """The versions every node must share with the server for results to match."""
    return {"fslora": version("fslora"), "flwr": version("flwr")}


def node_reply(node_config, prepare_seconds: float) -> RecordDict:
    """The ClientApp's answer to the discovery query."""
    pid, num = partition(node_config)
    return RecordDict({NODE: ConfigRecord({"partition-id": pid, "num-partitions": num,
                                           "prepare-seconds": float(prepare_seconds), **versions()})})


def partition(node_config) -> tuple[int, int]:
    """(partition-id, num-partitions) from a SuperNode's --node-config; ValueError if absent."""
    try:
        pid, num = int(node_config["partition-id"]), int(node_config["num-partitions"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("this SuperNode has no integer partition-id / num-partitions: start it with "
                         "--node-config 'partition-id=<i> num-partitions=<N>'") from None
    if not 0 <= pid < num:
        raise ValueError(f"partition-id {pid} must be in [0, num-partitions = {num})")
    return pid, num


def discover(grid, n_clients: int, timeout: float, poll: float = 0.5) -> dict:
    """{client id: node id} for clients 0..n_clients-1; MissingClients / ValueError (one line,
    naming the node or partition) if the SuperNodes do not form exactly that federation."""
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < n_clients:
        if time.monotonic() >= deadline:
            raise MissingClients(f"only {len(nodes)} of {n_clients} SuperNodes connected within {timeout:g} s; start "
                                 f"one per client with --node-config 'partition-id=<i> num-partitions={n_clients}'")
        time.sleep(poll)
    queries = [Message(RecordDict({QUERY: ConfigRecord({"num-clients": n_clients})}), dst_node_id=n,
                       message_type=MessageType.QUERY) for n in nodes]
    replies = exchange(grid, queries, max(deadline - time.monotonic(), 1.0), poll)
    mine, clients = versions(), {}
    for reply in replies:
        node = int(reply.metadata.src_node_id)
        if reply.has_error():
            raise MissingClients(f"node {node} could not prepare the job: {' '.join(reply.error.reason.split())}")
        info = dict(reply.content[NODE])
        pid, num = int(info["partition-id"]), int(info["num-partitions"])
        if num != n_clients:
            raise ValueError(f"node {node} has num-partitions={num}, but the job has {n_clients} clients")
        if pid in clients:
            raise ValueError(f"partition-id {pid} is claimed by two nodes ({clients[pid]} and {node})")
        theirs = {k: info[k] for k in mine}
        if theirs != mine:
            raise ValueError(f"node {node} (partition-id {pid}) runs {theirs}, the server {mine}: install the same versions")
        clients[pid] = node
    absent = sorted(set(range(n_clients)) - set(clients))
    if absent:
        silent = sorted(set(nodes) - set(clients.values()))
        raise MissingClients(f"no node answered for partition-id {absent} within {timeout:g} s "
                             f"(nodes without an answer: {silent})")
    return clients
