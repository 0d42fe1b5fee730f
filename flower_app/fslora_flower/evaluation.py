"""Evaluation through Flower: each client evaluates the global model on its own data, the server
reduces the answers to the history row the in-process run records, bit for bit.

The in-process row (``fslora_ref.recorder.evaluate``) is every client's
``fslora_ref.recorder.evaluate_client`` (f_i, grad_W f_i and, if the algorithm has factors,
grad_{[B;A]} f_i), reduced in client order by ``fslora_ref.recorder.reduce_evaluations``, and for
FSLoRA the sketched loss, the clients' f_i^S (each with its own k_i) reduced by
``fslora_ref.problems.sketched.mean_sketched_loss``. Here a client computes its part with those
very functions on the same samples and sends it as float64; the server reduces the parts with the
same two functions in client order, so the row has the same bits. Wire cost of one evaluation, per
client: the global weights down (sum m_l n_l floats, plus the factors r (m_l + n_l) when the
algorithm has them) and as many floats back; it is a diagnostic, not part of the accounted k_i (m + n).

Server -> client, MessageType.EVALUATE:
    ArrayRecord  "fslora.model"     "<l>.W": (m_l, n_l) the global weights; ["<l>.B": (m_l, r), "<l>.A": (r, n_l)]
    ConfigRecord "fslora.evaluate"  round, client, scaling s, factors (bool), sketched-budget (k_i, or 0: none)
or, to name the client whose local training diverged (the divergence diagnosis only):
    ArrayRecord  "fslora.probe"     "<l>.B", "<l>.A", "<l>.coeff", ["<l>.delta"]: LayerFactors
    ConfigRecord "fslora.evaluate"  round, client, probe = True
Client -> server:
    ArrayRecord  "fslora.grads"     "<l>.W"; ["<l>.B", "<l>.A"]
    MetricRecord "fslora.loss"      loss, [sketched-loss]
    ConfigRecord "fslora.reply"     round, client
"""
from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict

from fslora_ref.lora import LayerFactors
from fslora_ref.problems.sketched import exact_sketched_loss, mean_sketched_loss
from fslora_ref.recorder import ClientEvaluation, evaluate_client, reduce_evaluations

MODEL, PROBE, ASK, GRADS, LOSS, REPLY = ("fslora.model", "fslora.probe", "fslora.evaluate", "fslora.grads",
                                          "fslora.loss", "fslora.reply")


class EvaluationMissing(RuntimeError):
    """Clients did not answer an evaluation (the message names them, one line)."""


def _array(x) -> Array:
    return Array(np.ascontiguousarray(np.asarray(x, dtype=np.float64)))


# -- server side -------------------------------------------------------------------------------
def evaluate_messages(algorithm, state, problem, config, nodes: dict, round_index: int) -> list:
    """One EVALUATE message per client of ``nodes`` ({client: node id}) for the server ``state``.

    Parameters
    ----------
    algorithm : Algorithm
        Its global weights (and factors, if it has trainable ones) are sent.
    state : ServerState
        The server state to evaluate.
    problem : ServerProblem
        Base weights and shapes.
    config : FedConfig
        Scaling s and budgets k_i.
    nodes : dict
        ``{client: node id}``, every client of the run.
    round_index : int
        Rounds done (0: the initial state); recorded in the messages.

    Returns
    -------
    list of Message
        In client order.
    """
    weights = algorithm.global_weights(state, problem, config)
    arrays = {f"{l}.W": _array(W) for l, W in enumerate(weights)}
    factors = algorithm.has_trainable_factors
    if factors:
        for l, (B, A) in enumerate(algorithm.global_factors(state)):
            arrays[f"{l}.B"], arrays[f"{l}.A"] = _array(B), _array(A)
    sketched = wants_sketched(algorithm)
    messages = []
    for client in sorted(nodes):
        ask = ConfigRecord({"round": int(round_index), "client": int(client), "scaling": float(config.lora_scaling),
                            "factors": bool(factors),
                            "sketched-budget": int(config.budgets[client]) if sketched else 0})
        messages.append(Message(RecordDict({MODEL: ArrayRecord(dict(arrays)), ASK: ask}), dst_node_id=nodes[client],
                                message_type=MessageType.EVALUATE, group_id=f"evaluate/{round_index}"))
    return messages


def wants_sketched(algorithm) -> bool:
    """Whether the algorithm records the sketched loss (FSLoRA's ``evaluate_extra``).

    Parameters
    ----------
    algorithm : Algorithm
        The algorithm.

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        For another algorithm with history entries of its own: the server cannot compute them
        from the clients' evaluations.
    """
    from fslora_ref.algorithms.protocol import Algorithm
    own = type(algorithm).evaluate_extra
    if own is Algorithm.evaluate_extra:
        return False
    if algorithm.name == "fslora":
        return True
    raise ValueError(f"algorithm {algorithm.name!r} records its own history entries (evaluate_extra): "
                     f"the Flower server cannot compute them from the clients' evaluations")


def client_parts(replies, nodes: dict, round_index: int) -> tuple[dict, dict]:
    """The clients' evaluations from the EVALUATE replies.

    Parameters
    ----------
    replies : list of Message
        The replies (error replies included).
    nodes : dict
        ``{client: node id}``: every client whose evaluation is expected.
    round_index : int
        Rounds done: a reply for another state is not counted.

    Returns
    -------
    parts : dict
        ``{client: (ClientEvaluation, sketched loss f_i^S or None)}``.
    missing : dict
        ``{client: why}`` for the clients without a usable reply.
    """
    clients_of = {n: c for c, n in nodes.items()}
    parts, missing = {}, {}
    for reply in replies:
        client = clients_of.get(int(reply.metadata.src_node_id))
        if client is None:
            continue
        if reply.has_error():
            missing[client] = "evaluation failed (" + " ".join((reply.error.reason or "").split()) + ")"
            continue
        meta, grads, loss = dict(reply.content[REPLY]), reply.content[GRADS], dict(reply.content[LOSS])
        if (meta.get("round"), meta.get("client")) != (round_index, client):
            missing[client] = f"evaluation reply for round {meta.get('round')}, client {meta.get('client')}"
            continue
        layers = sorted({int(k.split(".")[0]) for k in grads})
        wg = [grads[f"{l}.W"].numpy() for l in layers]
        fg = [x for l in layers for x in (grads[f"{l}.B"].numpy(), grads[f"{l}.A"].numpy())] if f"0.B" in grads else None
        parts[client] = (ClientEvaluation(float(loss["loss"]), wg, fg),
                         float(loss["sketched-loss"]) if "sketched-loss" in loss else None)
    for client in nodes:
        if client not in parts and client not in missing:
            missing[client] = "no evaluation reply"
    return parts, missing


def reduce_row(parts: dict, algorithm) -> dict:
    """The history row from the clients' parts (``client_parts``), reduced in client order by the
    in-process run's functions (see the module docstring).

    Parameters
    ----------
    parts : dict
        ``{client: (ClientEvaluation, sketched loss f_i^S or None)}``.
    algorithm : Algorithm
        Whether it records the sketched loss.

    Returns
    -------
    dict
        ``loss``, ``grad_norm_weights``, [``grad_norm_factors``], [``sketched_loss``].
    """
    order = sorted(parts)
    row = reduce_evaluations([parts[c][0] for c in order])
    if wants_sketched(algorithm):
        row["sketched_loss"] = mean_sketched_loss(parts[c][1] for c in order)
    return row


def probe_message(client: int, node: int, factors, round_index: int) -> Message:
    """An EVALUATE message asking client ``client`` for its full-data loss at ``factors``.

    Parameters
    ----------
    client : int
        The client.
    node : int
        Its node id.
    factors : list of LayerFactors
        Per layer: B (m_l, q), A (q, n_l), coeff (q,), delta (m_l, n_l) or None.
    round_index : int
        Recorded in the message (-1: a diagnosis).

    Returns
    -------
    Message
    """
    arrays = {}
    for l, f in enumerate(factors):
        arrays[f"{l}.B"], arrays[f"{l}.A"], arrays[f"{l}.coeff"] = _array(f.B), _array(f.A), _array(f.coeff)
        if f.delta is not None:
            arrays[f"{l}.delta"] = _array(f.delta)
    ask = ConfigRecord({"round": int(round_index), "client": int(client), "probe": True})
    return Message(RecordDict({PROBE: ArrayRecord(arrays), ASK: ask}), dst_node_id=node,
                   message_type=MessageType.EVALUATE, group_id=f"probe/{round_index}")


# -- client side -------------------------------------------------------------------------------
def evaluate_here(content: RecordDict, local) -> RecordDict:
    """The reply to an EVALUATE message, computed on this node's partition ``local`` (LocalPartition).

    Parameters
    ----------
    content : RecordDict
        The message content (see the module docstring).
    local : LocalPartition
        This node's data; its ``own`` one-client Problem is evaluated as client 0.

    Returns
    -------
    RecordDict
        The reply content.
    """
    from fslora_ref.divergence import client_loss
    ask = dict(content[ASK])
    if int(ask["client"]) != local.client:
        raise ValueError(f"this node is partition-id {local.client} but was asked to evaluate client {ask['client']}")
    problem, reply = local.own, ConfigRecord({"round": int(ask["round"]), "client": local.client})
    if ask.get("probe"):
        arrays = content[PROBE]
        factors = [LayerFactors(arrays[f"{l}.B"].numpy(), arrays[f"{l}.A"].numpy(), arrays[f"{l}.coeff"].numpy(),
                                arrays[f"{l}.delta"].numpy() if f"{l}.delta" in arrays else None)
                   for l in range(problem.n_layers)]
        return RecordDict({GRADS: ArrayRecord(), LOSS: MetricRecord({"loss": client_loss(problem, 0, factors)}),
                           REPLY: reply})
    arrays, s = content[MODEL], float(ask["scaling"])
    weights = [arrays[f"{l}.W"].numpy() for l in range(problem.n_layers)]
    layers = ([(arrays[f"{l}.B"].numpy(), arrays[f"{l}.A"].numpy()) for l in range(problem.n_layers)]
              if ask["factors"] else None)
    with np.errstate(over="ignore", invalid="ignore"):
        part = evaluate_client(problem, 0, weights, layers, s)
        metrics = {"loss": float(part.loss)}
        k = int(ask["sketched-budget"])
        if k and layers is not None:
            sketched = exact_sketched_loss(problem, 0, layers, s, [k] * problem.n_layers)
            if sketched is not None:
                metrics["sketched-loss"] = float(sketched)
    out = {f"{l}.W": _array(g) for l, g in enumerate(part.weight_grads)}
    if part.factor_grads is not None:
        for l in range(problem.n_layers):
            out[f"{l}.B"], out[f"{l}.A"] = _array(part.factor_grads[2 * l]), _array(part.factor_grads[2 * l + 1])
    return RecordDict({GRADS: ArrayRecord(out), LOSS: MetricRecord(metrics), REPLY: reply})
