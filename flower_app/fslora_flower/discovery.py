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
from flwr.common.constant import ErrorCode

from .strategy import MissingClients, client_error

QUERY, NODE = "fslora.query", "fslora.node"


def versions() -> dict:
    """The versions every node must share with the server for results to match.

    Returns
    -------
    dict
        ``{"fslora": ..., "flwr": ...}``, the installed distributions' versions.
    """
    return {"fslora": version("fslora"), "flwr": version("flwr")}


def node_reply(node_config, prepare_seconds: float, data: dict | None = None) -> RecordDict:
    """The ClientApp's answer to the discovery query.

    Parameters
    ----------
    node_config : Mapping
        The SuperNode's ``--node-config`` (partition-id, num-partitions, optional budget / device /
        dtype).
    prepare_seconds : float
        How long preparing the job took on this node.
    data : dict or None
        What the node announces of its own data: for a simulate job its number of samples and their
        SHA-256 (``client-size``, ``data-sha256``: :func:`fslora_flower.numpy_client.prepare`); for a
        finetune partition :func:`llm_bridge.node_data.announcement`.

    Returns
    -------
    flwr.app.RecordDict
        A ConfigRecord ``"fslora.node"``: partition-id, num-partitions, prepare-seconds, what the node
        announces (:func:`announced`, and ``data``) and :func:`versions`.

    Raises
    ------
    ValueError
        As :func:`partition` and :func:`announced`.
    """
    pid, num = partition(node_config)
    return RecordDict({NODE: ConfigRecord({"partition-id": pid, "num-partitions": num,
                                           "prepare-seconds": float(prepare_seconds), **announced(node_config),
                                           **(data or {}), **versions()})})


ANNOUNCED = ("budget", "device", "dtype")   # what a SuperNode may announce in its --node-config


def announced(node_config) -> dict:
    """What a SuperNode announces in its ``--node-config``: its rank budget k_i, device and dtype.

    Parameters
    ----------
    node_config : Mapping
        The SuperNode's node config.

    Returns
    -------
    dict
        ``budget`` (int, if given), ``device`` and ``dtype`` (as strings, if given).

    Raises
    ------
    ValueError
        One line, for a budget that is not an integer >= 1.

    Examples
    --------
    >>> from fslora_flower.discovery import announced
    >>> announced({"partition-id": 0, "num-partitions": 2, "budget": 4, "device": "cpu"})
    {'budget': 4, 'device': 'cpu'}
    """
    out = {}
    if "budget" in node_config:
        k = node_config["budget"]
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"node config budget={k!r} must be an integer >= 1 (the node's rank budget k_i)")
        out["budget"] = int(k)
    out.update({key: str(node_config[key]) for key in ("device", "dtype") if key in node_config})
    return out


def announced_budgets(answers: dict, nodes: dict, rank: int) -> list | None:
    """The clients' budgets k_i from the nodes' announcements, to plan the rounds from.

    Parameters
    ----------
    answers : dict
        ``{client id: the node's discovery answer}`` (:func:`discover` with ``with_answers``).
    nodes : dict
        ``{client id: node id}``, to name a node in a message.
    rank : int
        The global rank r (no budget may exceed it).

    Returns
    -------
    list of int or None
        k_i in client-id order; None if no node announced a budget.

    Raises
    ------
    ValueError
        Naming the node, if only some nodes announced a budget or one exceeds r.

    Examples
    --------
    >>> from fslora_flower.discovery import announced_budgets
    >>> announced_budgets({1: {"budget": 8}, 0: {"budget": 2}}, {0: 11, 1: 12}, rank=8)
    [2, 8]
    >>> announced_budgets({0: {}, 1: {}}, {0: 11, 1: 12}, rank=8) is None
    True
    """
    said = {c: a.get("budget") for c, a in answers.items()}
    if all(k is None for k in said.values()):
        return None
    silent = sorted(c for c, k in said.items() if k is None)
    if silent:
        raise ValueError(f"partition-id {silent[0]} (node {nodes[silent[0]]}) announced no budget while others did: "
                         f"start every SuperNode with budget=<k_i> in --node-config, or none")
    for c, k in sorted(said.items()):
        if k > rank:
            raise ValueError(f"partition-id {c} (node {nodes[c]}) announced budget={k}, above the rank r = {rank}")
    return [int(said[c]) for c in sorted(said)]


def partition(node_config) -> tuple[int, int]:
    """Which client a SuperNode is, from its ``--node-config``.

    Parameters
    ----------
    node_config : Mapping
        The SuperNode's node config.

    Returns
    -------
    partition_id : int
        The client id i, in [0, num_partitions).
    num_partitions : int
        N, the number of clients.

    Raises
    ------
    ValueError
        If either key is missing or not an integer, or the partition-id is out of range.
    """
    try:
        pid, num = int(node_config["partition-id"]), int(node_config["num-partitions"])
    except (KeyError, TypeError, ValueError):
        raise ValueError("this SuperNode has no integer partition-id / num-partitions: start it with "
                         "--node-config 'partition-id=<i> num-partitions=<N>'") from None
    if not 0 <= pid < num:
        raise ValueError(f"partition-id {pid} must be in [0, num-partitions = {num})")
    return pid, num


def discover(grid, n_clients: int, timeout: float, poll: float = 0.5, with_answers: bool = False):
    """Find which Flower node is each client 0..n_clients-1 before the first round.

    Every node that shows up is sent one QUERY; discovery ends as soon as each partition has
    answered, so a stale node (one that died but is still registered) does not hold it up. A
    node whose ClientApp cannot prepare the job, two nodes claiming one partition or a version
    mismatch end it at once; otherwise MissingClients at ``timeout``, naming what is missing.

    Parameters
    ----------
    grid : flwr.server.Grid
        The ServerApp's grid.
    n_clients : int
        N: the partitions that must answer.
    timeout : float
        Seconds to wait for all of them.
    poll : float, default 0.5
        Seconds between looks for new nodes and replies.
    with_answers : bool, default False
        Also return every node's answer.

    Returns
    -------
    nodes : dict
        ``{client id: node id}``.
    answers : dict
        Only with ``with_answers``: ``{client id: the node's answer}`` (partition, prepare-seconds,
        announced budget / device / dtype, a finetune node's data announcement, versions).

    Raises
    ------
    MissingClients
        If a node's ClientApp cannot prepare the job for a reason other than a user error, or not
        every partition answered in time.
    ValueError
        If a node refused the job or its data with a user error (a bad option, a bad or foreign
        partition file: :func:`is_user_error`), two nodes claim one partition, a node's
        num-partitions is not N, or its versions differ from the server's.
    """
    deadline = time.monotonic() + timeout
    mine, clients, pending, asked, unavailable, answers = versions(), {}, {}, set(), {}, {}
    while True:
        fresh = [n for n in sorted(grid.get_node_ids()) if n not in asked]
        if fresh:
            ids = grid.push_messages([Message(RecordDict({QUERY: ConfigRecord({"num-clients": n_clients})}),
                                              dst_node_id=n, message_type=MessageType.QUERY) for n in fresh])
            pending.update({mid: n for mid, n in zip(ids, fresh) if mid})
            asked.update(fresh)
        for reply in grid.pull_messages(list(pending)) if pending else []:
            node = pending.pop(reply.metadata.reply_to_message_id, int(reply.metadata.src_node_id))
            if reply.has_error():
                reason = " ".join((reply.error.reason or "").split())
                if reply.error.code in FATAL:
                    kind, text = client_error(reply.error.reason)
                    # the node refused the job or its data (a bad partition file...): the user's error, exit 2
                    refusal = ValueError if is_user_error(kind) else MissingClients
                    raise refusal(f"node {node} could not prepare the job: {text if kind else reason}")
                unavailable[node] = reason
                continue
            info = dict(reply.content[NODE])
            pid = _check_answer(node, info, n_clients, mine)
            if pid in clients:
                raise ValueError(f"partition-id {pid} is claimed by two nodes ({clients[pid]} and {node})")
            clients[pid] = node
            answers[pid] = info
        if len(clients) == n_clients:
            return (clients, answers) if with_answers else clients
        if time.monotonic() >= deadline:
            absent = sorted(set(range(n_clients)) - set(clients))
            silent = sorted(set(pending.values()))
            raise MissingClients(f"no SuperNode answered for partition-id {absent} within {timeout:g} s "
                                 f"({len(asked)} node(s) connected; no answer from {silent or 'none'}"
                                 f"{'; unavailable: ' + str(sorted(unavailable)) if unavailable else ''}); start one "
                                 f"per client with --node-config 'partition-id=<i> num-partitions={n_clients}'")
        time.sleep(poll)


def is_user_error(kind: str) -> bool:
    """Whether the exception class named ``kind`` (a ClientApp's, by name) is a user error.

    Parameters
    ----------
    kind : str
        An exception class name, e.g. "ValueError".

    Returns
    -------
    bool
        True for fslora_ref.errors.USER_ERRORS (bad options, a bad data file, a missing file).
    """
    import builtins

    from fslora_ref.errors import USER_ERRORS
    cls = getattr(builtins, kind, None)
    return kind == "UserError" or (isinstance(cls, type) and issubclass(cls, USER_ERRORS))


# the node's ClientApp cannot run the job; other errors (node unavailable, ...) may be a stale node
FATAL = (ErrorCode.LOAD_CLIENT_APP_EXCEPTION, ErrorCode.CLIENT_APP_RAISED_EXCEPTION, ErrorCode.INVALID_FAB,
         ErrorCode.CLIENT_APP_CRASHED)


def _check_answer(node, info, n_clients, mine) -> int:
    pid, num = int(info["partition-id"]), int(info["num-partitions"])
    if num != n_clients:
        raise ValueError(f"node {node} has num-partitions={num}, but the job has {n_clients} clients")
    theirs = {k: info.get(k) for k in mine}
    if theirs != mine:
        raise ValueError(f"node {node} (partition-id {pid}) runs {theirs}, the server {mine}: install the same versions")
    return pid
