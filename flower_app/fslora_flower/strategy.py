"""A Flower ``Strategy`` whose rules are the reference's: FSLoRA and the four baselines.

``configure_train`` asks the algorithm's own ``configure_round`` for the round's plans (FSLoRA
draws its sketches there) and sends each participant only its plan; ``aggregate_train`` feeds
the replies, in client-id order, to the algorithm's own ``aggregate`` (scatter + average,
server optimiser). Flower's FedAvg sums in arrival order, which is not reproducible; here the
result does not depend on which reply came first.

Clients are fslora client ids 0..N-1; ``nodes`` maps them to Flower node ids (found by asking
every SuperNode for its ``partition-id``, see discovery.py). The server state (factors plus the
algorithm's extras: server optimiser moments, FlexLoRA's products, FLoRA's merged weights) lives
in ``self.state``; the ArrayRecord passed to ``configure_train`` is not read, and the one
``aggregate_train`` returns holds the rank-r factors for Flower's bookkeeping.

A participant that does not answer (no reply before the round's timeout, a node that went
away, a ClientApp that raised) is handled per ``on_missing``: ``"stop"`` raises MissingClients
naming it before anything is aggregated; ``"continue"`` aggregates the replies that came, so
the average is over those participants, as with client sampling. A client whose local
training diverged raises the same DivergenceError as the in-process run, whatever the policy.
"""
from __future__ import annotations

import re
import time

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MessageType, MetricRecord
from flwr.serverapp.strategy import Strategy

from fslora_ref.client import DivergenceError
from fslora_ref.federation import check_finite_state

from .exchange import payload_bytes
from .records import TIMING, BadReply, BadUpdate, plan_to_record, record_to_upload

ON_MISSING = ("stop", "continue")
ON_BAD_UPDATE = ("stop", "drop")


class MissingClients(RuntimeError):
    """Participants of a round gave no usable reply (the message names them, one line)."""


class RefusedUpdate(RuntimeError):
    """A participant's update was refused (NaN/inf, wrong shape or dtype, norm above the bound) and
    the policy is "stop" (the message names the client and what was wrong, one line)."""


def client_error(reason: str | None) -> tuple[str, str]:
    """Split the reason of an error reply into the exception's class name and its message.

    Flower words a ClientApp exception as ``"<class 'pkg.Name'>:<'message'>"``.

    Parameters
    ----------
    reason : str or None
        ``reply.error.reason``.

    Returns
    -------
    kind : str
        The exception class's name without its module (``"DivergenceError"``), or ``""`` if the
        reason is not in Flower's exception wording.
    message : str
        The message (or the whole reason) on one line.

    Examples
    --------
    >>> from fslora_flower.strategy import client_error
    >>> client_error("<class 'fslora_ref.client.DivergenceError'>:<'client 3: loss is nan'>")
    ('DivergenceError', 'client 3: loss is nan')
    >>> client_error(None)
    ('', 'error without a reason')
    """
    found = re.match(r"<class '([\w.]+)'>:<'(.*)'>$", reason or "", re.S)
    if not found:
        return "", " ".join((reason or "error without a reason").split())
    return found.group(1).rsplit(".", 1)[-1], " ".join(found.group(2).split())


class FSLoRAStrategy(Strategy):
    """One fslora_ref algorithm driven by Flower messages.

    The transport may also set ``refused``: nodes whose messages the SuperLink refused.

    Parameters
    ----------
    algorithm : Algorithm
        An fslora_ref algorithm (or the bridge's TorchClients wrapper): its ``configure_round`` and
        ``aggregate`` are the server's rules.
    problem : Problem or ServerProblem
        What those read (layer shapes, base weights, client sizes; the server's view holds no client data).
    config : FedConfig
        The run's configuration (rank, budgets, participants per round, rounds).
    nodes : dict
        ``{client id: Flower node id}``.
    state : ServerState, optional
        The server state to start from (default: ``algorithm.init(problem, config)``).
    on_missing : {"stop", "continue"}, default "stop"
        A participant without a usable reply: ``"stop"`` raises MissingClients before anything is
        aggregated; ``"continue"`` averages over the participants that replied.
    dtype : numpy dtype, default float64
        The float type of the factors sent to clients.
    reply_timeout : float, optional
        Seconds; only used to word the missing-reply error.
    on_bad_update : {"stop", "drop"}, default "stop"
        A refused update (NaN/inf, wrong shape or dtype, norm above the bound): ``"stop"`` raises
        RefusedUpdate; ``"drop"`` leaves that client out of the round.
    max_update_norm : float, optional
        A bound on the Euclidean norm of a client's upload (None: no bound).
    first_round : int, default 0
        Rounds already done (a resumed run): Flower's round 1 is then the run's round
        ``first_round + 1``, so ``Strategy.start(num_rounds=rounds left)`` continues the run.
    ledger : Ledger, optional
        Each round's entry (bytes, timings, missing clients) is appended to it (also when the round
        fails).
    evaluation : fslora_flower.start_run.RoundRecord, optional
        Evaluation through Flower after every round (start_run.py): ``by_clients``,
        ``messages(state, rounds_done) -> [Message]`` and, when the clients evaluate,
        ``after_round(round_index, replies, state, plans, uploads) -> row`` (records the history
        row, checkpoints); ``missing`` ({client: why} of the last evaluation). When the server
        evaluates (``by_clients`` false), ``Strategy.start``'s evaluate_fn ends each round with
        :meth:`end_round`. None: no evaluation (the caller's run loop evaluates).

    Raises
    ------
    ValueError
        If ``on_missing`` or ``on_bad_update`` is not one of its choices.
    """

    def __init__(self, algorithm, problem, config, nodes, *, state=None, on_missing="stop", dtype=np.float64,
                 reply_timeout=None, on_bad_update="stop", max_update_norm=None, first_round=0, ledger=None,
                 evaluation=None):
        if on_missing not in ON_MISSING:
            raise ValueError(f"on_missing must be one of {ON_MISSING}, got {on_missing!r}")
        if on_bad_update not in ON_BAD_UPDATE:
            raise ValueError(f"on_bad_update must be one of {ON_BAD_UPDATE}, got {on_bad_update!r}")
        self.on_bad_update, self.max_update_norm = on_bad_update, max_update_norm
        self.algorithm, self.problem, self.config = algorithm, problem, config
        self.nodes = {int(c): int(n) for c, n in nodes.items()}
        self.clients_of = {n: c for c, n in self.nodes.items()}
        self.state = algorithm.init(problem, config) if state is None else state
        self.on_missing, self.dtype, self.reply_timeout = on_missing, dtype, reply_timeout
        self.first_round, self.ledger, self.evaluation = int(first_round), ledger, evaluation
        self.refused = set()                 # node ids the SuperLink refused messages for (node gone)
        self.plans = {}                      # client -> ClientPlan of the configured round
        self.sent = []                       # (client, Message) of the configured round
        self.round_index = None
        self.last = ([], [], {})             # (plans, uploads, {client: reason}) of the last aggregated round
        self.phase, self.rounds_completed = None, 0
        self.entry, self._clock = None, {}

    def round_of(self, server_round) -> int:
        """The run's 0-based round index of Flower's round ``server_round``.

        Parameters
        ----------
        server_round : int
            Flower's round, counted from 1 in each ``start``.

        Returns
        -------
        int
        """
        return self.first_round + int(server_round) - 1

    # -- training -----------------------------------------------------------------------------
    def configure_train(self, server_round, arrays, config, grid):
        """One TRAIN message per participant of a round, each holding only that client's plan.

        The plans come from the algorithm's own ``configure_round`` (FSLoRA draws its sketches there).

        Parameters
        ----------
        server_round : int
            The round, counted from 1 as Flower does (the run's round index is ``first_round +
            server_round - 1``).
        arrays : flwr.app.ArrayRecord
            Not read (the server state is ``self.state``).
        config : flwr.app.ConfigRecord
            Not read.
        grid : flwr.server.Grid
            Not read (the messages are addressed by node id).

        Returns
        -------
        list of flwr.app.Message
            One per participant, in the order of ``configure_round``'s plans.

        Raises
        ------
        MissingClients
            If a participant has no SuperNode.
        """
        self.phase = "train"
        t = self.round_of(server_round)
        participants = self.config.participants(t)
        absent = [c for c in participants if c not in self.nodes]
        if absent:
            raise MissingClients(f"round {t + 1}: no SuperNode with partition-id {absent[0]} "
                                 f"(connected partitions: {sorted(self.nodes)})")
        plans = self.algorithm.configure_round(self.state, self.problem, self.config, t, participants)
        self.plans, self.round_index = {p.client: p for p in plans}, t
        self.sent = [(p.client, Message(plan_to_record(p, t, self.algorithm.name, self.dtype),
                                        dst_node_id=self.nodes[p.client], message_type=MessageType.TRAIN,
                                        group_id=f"{self.algorithm.name}/{t + 1}")) for p in plans]
        self.entry = {"algorithm": self.algorithm.name, "round": t + 1,
                      "clients": {str(c): {"node": str(self.nodes[c]), "down-bytes": payload_bytes(m),
                                           "down-floats": self.plans[c].download_floats} for c, m in self.sent}}
        self._clock = {"train": time.perf_counter()}
        return [m for _, m in self.sent]

    def aggregate_train(self, server_round, replies):
        """The reference's aggregate over the replies, in client-id order (independent of arrival order).

        Replies are matched to the messages they answer; error replies, malformed replies and
        refused updates are handled per ``on_missing`` / ``on_bad_update``. The new server state is
        ``self.state``; ``self.last`` holds ``(plans, uploads, {client: why missing})``. With a
        ledger, the round's entry records what each client sent and why one is missing (also when
        this raises).

        Parameters
        ----------
        server_round : int
            Flower's round, counted from 1; it must be the one :meth:`configure_train` configured.
        replies : iterable of flwr.app.Message
            The replies that arrived (a late reply to an earlier round is ignored).

        Returns
        -------
        factors : flwr.app.ArrayRecord
            The rank-r server factors, ``"<l>.B": (m_l, r)`` and ``"<l>.A": (r, n_l)``.
        metrics : flwr.app.MetricRecord
            ``train-loss`` (the mean over clients of each one's mean local loss) and ``clients``.

        Raises
        ------
        ValueError
            If ``server_round`` was not configured.
        DivergenceError
            If a client's local training diverged (whatever the policy).
        RefusedUpdate
            If an update was refused and ``on_bad_update`` is ``"stop"``, or every update was refused.
        MissingClients
            If a participant gave no usable reply and ``on_missing`` is ``"stop"``, or none replied.
        DivergenceError
            Also if the aggregated factors are not finite (``check_finite_state``).
        """
        t = self.round_of(server_round)
        if t != self.round_index:
            raise ValueError(f"aggregate_train: round {server_round} was not configured by configure_train")
        entry = self.entry
        entry["seconds-exchange"] = time.perf_counter() - self._clock["train"]
        for reply in replies:
            client = self.clients_of.get(int(reply.metadata.src_node_id))
            if reply.has_content() and str(client) in entry["clients"]:
                row = entry["clients"][str(client)]
                row["up-bytes"] = payload_bytes(reply)
                if TIMING in reply.content:
                    row.update(dict(reply.content[TIMING]))
        try:
            factors, metrics = self._aggregate(t + 1, t, replies)
            plans, uploads, missing = self.last
            for up in uploads:
                entry["clients"][str(up.client)]["up-floats"] = up.upload_floats
            entry["missing"] = {str(c): why for c, why in sorted(missing.items())}
            check_finite_state(self.state, t, plans, self.config)
        except BaseException as exc:
            entry["error"] = " ".join(str(exc).split())
            self._record()
            raise
        entry["seconds-train"] = time.perf_counter() - self._clock["train"]
        if self.evaluation is None:
            self.rounds_completed += 1
            self._record()
        return factors, metrics

    def _record(self):
        entry, self.entry = self.entry, None
        if entry is None:
            return
        entry["seconds"] = time.perf_counter() - self._clock["train"]
        if self.ledger is not None:
            self.ledger.run["rounds"].append(entry)
            self.ledger.save()

    def _aggregate(self, server_round, t, replies):
        uploads, missing, refused = {}, {}, {}
        # the Grid gives each pushed message its id; an error reply the SuperLink writes for a node
        # that went away comes from the SuperLink, so replies are matched by the message they answer
        answers = {m.metadata.message_id: c for c, m in self.sent if m.metadata.message_id}
        for reply in replies:
            client = answers.get(reply.metadata.reply_to_message_id, self.clients_of.get(int(reply.metadata.src_node_id)))
            if client is None or client not in self.plans:
                continue  # not a participant of this round (a late reply to an earlier message)
            if reply.has_error():
                kind, text = client_error(reply.error.reason)
                if kind == "DivergenceError":   # diverged: stop exactly as the in-process run does
                    raise DivergenceError(text)
                missing[client] = f"failed ({kind + ': ' if kind else ''}{text})"
                continue
            try:
                uploads[client] = record_to_upload(reply.content, self.plans[client], t, self.algorithm.name,
                                                   self.max_update_norm)
            except BadUpdate as exc:
                refused[client] = str(exc)
            except BadReply as exc:
                missing[client] = str(exc)
        if refused and self.on_bad_update == "stop":
            who = "; ".join(f"{why} (node {self.nodes[c]})" for c, why in sorted(refused.items()))
            raise RefusedUpdate(f"round {server_round}/{self.config.rounds}: update refused: {who}; stopped before "
                                f"aggregating (--on-bad-update drop leaves such a client out of the round)")
        for client in self.plans:
            if client not in uploads and client not in missing and client not in refused:
                wait = "" if self.reply_timeout is None else f" within {self.reply_timeout:g} s"
                gone = self.nodes[client] in self.refused
                missing[client] = "node gone (the SuperLink no longer lists it)" if gone else f"no reply{wait}"
        if missing and (self.on_missing == "stop" or not uploads):
            raise MissingClients(self._missing_message(server_round, missing, bool(uploads)))
        if not uploads:
            raise RefusedUpdate(f"round {server_round}/{self.config.rounds}: every update was refused: "
                                + "; ".join(refused[c] for c in sorted(refused)))
        missing.update({c: f"dropped: {why}" for c, why in refused.items()})
        order = sorted(uploads)
        plans, ups = [self.plans[c] for c in order], [uploads[c] for c in order]
        self.state = self.algorithm.aggregate(self.state, plans, ups, self.config)
        self.last = (plans, ups, missing)
        factors = ArrayRecord({f"{l}.{name}": Array(np.ascontiguousarray(x))
                               for l, pair in enumerate(self.state.layers) for name, x in zip("BA", pair)})
        losses = [float(np.mean(u.losses)) for u in ups]
        return factors, MetricRecord({"train-loss": float(np.mean(losses)), "clients": len(ups)})

    def _missing_message(self, server_round, missing, any_reply) -> str:
        who = "; ".join(f"client {c} (node {self.nodes[c]}): {why}" for c, why in sorted(missing.items()))
        rounds = self.config.rounds
        if not any_reply:
            return f"round {server_round}/{rounds}: no participant replied ({who})"
        return (f"round {server_round}/{rounds}: {who}; stopped before aggregating (completed rounds are kept: "
                f"rerun with --resume; --on-missing continue averages over the clients that reply)")

    # -- evaluation: the clients (simulate) or the server's own held-out set (finetune) ------------
    def configure_evaluate(self, server_round, arrays, config, grid):
        """The EVALUATE messages for the state after round ``server_round``: one per client when the
        clients evaluate (``evaluation.by_clients``), none when the server does (``evaluate_fn``).

        Parameters
        ----------
        server_round : int
            Flower's round.
        arrays : ArrayRecord
            Not read (the state is ``self.state``).
        config : ConfigRecord
            Not read.
        grid : Grid
            Not read.

        Returns
        -------
        list of Message
            Empty without an ``evaluation`` (the caller's run loop evaluates) or when the server evaluates.
        """
        if self.evaluation is None or self.entry is None:
            return []
        self.phase = "evaluate"
        self._clock["evaluate"] = time.perf_counter()
        messages = self.evaluation.messages(self.state, self.round_of(server_round) + 1)
        if messages:
            self.entry["evaluate-down-bytes"] = sum(payload_bytes(m) for m in messages)
        return messages

    def aggregate_evaluate(self, server_round, replies):
        """The history row of the round from the clients' evaluations (recorded and checkpointed
        by the ``evaluation``; see :meth:`end_round`).

        Parameters
        ----------
        server_round : int
            Flower's round.
        replies : list of Message
            The EVALUATE replies.

        Returns
        -------
        MetricRecord or None
            The row's ``loss``; None without an ``evaluation`` or when the server evaluates (the
            round then ends in ``Strategy.start``'s ``evaluate_fn``).
        """
        if self.evaluation is None or self.entry is None or not self.evaluation.by_clients:
            return None
        t = self.round_of(server_round)
        plans, uploads, _ = self.last
        self.entry["evaluate-up-bytes"] = sum(payload_bytes(r) for r in replies if r.has_content())
        row = self.end_round(lambda: self.evaluation.after_round(t, replies, self.state, plans, uploads))
        return MetricRecord({"loss": float(row["loss"])})

    def end_round(self, record):
        """End the configured round: ``record()`` records its row and checkpoint, then the round's
        ledger entry is closed (with the error, if ``record`` raises).

        Parameters
        ----------
        record : callable
            ``record() -> row``.

        Returns
        -------
        dict
            The row ``record`` returned.
        """
        try:
            row = record()
        except BaseException as exc:
            self.entry["error"] = " ".join(str(exc).split())
            self._record()
            raise
        if self.evaluation.missing:
            self.entry["evaluate-missing"] = {str(c): why for c, why in sorted(self.evaluation.missing.items())}
        if "evaluate" in self._clock:
            self.entry["seconds-evaluate"] = time.perf_counter() - self._clock["evaluate"]
        self.rounds_completed += 1
        self._record()
        return row

    def summary(self) -> None:
        from flwr.supercore import log
        from logging import INFO
        log(INFO, "\t├──> fslora algorithm: %s, N=%d, r=%d, budgets %s", self.algorithm.name,
            self.config.n_clients, self.config.rank, list(self.config.budgets))
        log(INFO, "\t└──> on missing replies: %s", self.on_missing)
