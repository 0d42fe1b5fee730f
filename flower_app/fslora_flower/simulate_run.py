"""`fslora flower simulate` on the server: the clients evaluate, the server holds no client data.

:class:`FlowerSimulation` is the :class:`~fslora_flower.start_run.FlowerRun` (``Strategy.start``
drives each algorithm's rounds, one strategy per algorithm; resume, checkpoints and polling as
there) whose evaluation is made by the clients: after each round configure_evaluate sends every
client the new global model, which it evaluates on its own data; aggregate_evaluate reduces the
answers to the in-process history row (evaluation.py), then checkpoints. ``start`` evaluates on
the clients only after a round (its ``evaluate_fn`` is the server's own, centralised evaluation),
so the initial row (row 0) and the resumed checkpoint's check are the same evaluation exchange,
made before ``start``. A server-side held-out set, if given, is ``start``'s ``evaluate_fn``.

History, checkpoints and --resume are those of ``fslora_ref.simulate.run_all`` (this is its
``run_fn``): a run over Flower writes the in-process run's bytes.
"""
from __future__ import annotations

import sys

import numpy as np
from flwr.app import MetricRecord

from fslora_ref.recorder import HistoryRecorder

from .evaluation import EvaluationMissing, client_parts, evaluate_messages, probe_message, reduce_row
from .start_run import FlowerRun, PollingGrid, RoundRecord


class FederatedRecorder(HistoryRecorder):
    """The reference's HistoryRecorder whose evaluation is made by the clients (evaluation.py).

    Parameters
    ----------
    problem : ServerProblem
        The server's view (no client data).
    grid : PollingGrid
        For the evaluations made outside ``Strategy.start`` (row 0, the resume check).
    nodes : dict
        ``{client: node id}``.
    timeout : float
        Seconds to wait for the evaluations.
    on_missing : {"stop", "continue"}
        "continue": a row from the clients that answered (named in ``missing`` and on stderr).
    """

    def __init__(self, problem, grid, nodes, timeout, on_missing="stop"):
        super().__init__(problem)
        self.grid, self.nodes, self.timeout, self.on_missing = grid, dict(nodes), timeout, on_missing
        self.rounds_done, self.pending, self.missing = 0, None, {}

    def resumed(self, path, algorithm, state, history, config, next_round):
        """The reference's resume check (its evaluation asked of the clients), at round ``next_round``.

        Parameters
        ----------
        path : str
            The checkpoint.
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The loaded state.
        history : History
            The loaded history.
        config : FedConfig
            The run's configuration.
        next_round : int
            The rounds the checkpoint holds.

        Returns
        -------
        History
        """
        self.rounds_done = next_round
        return super().resumed(path, algorithm, state, history, config, next_round)

    def evaluate(self, algorithm, state, config) -> dict:
        """The history row of ``state``: the one reduced from ``Strategy.start``'s evaluation
        replies (``pending``) if there is one, else from an evaluation exchange made here.

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The server state (after ``rounds_done`` rounds).
        config : FedConfig
            The run's configuration.

        Returns
        -------
        dict
            As :func:`fslora_ref.recorder.evaluate`.
        """
        if self.pending is not None:
            row, self.pending = self.pending, None
            return row
        messages = evaluate_messages(algorithm, state, self.problem, config, self.nodes, self.rounds_done)
        return self.reduce(algorithm, self.grid.send_and_receive(messages, timeout=self.timeout), self.rounds_done)

    def reduce(self, algorithm, replies, rounds_done: int) -> dict:
        """The row from the evaluation ``replies`` of the state after ``rounds_done`` rounds.

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm.
        replies : list of Message
            The EVALUATE replies.
        rounds_done : int
            The rounds the evaluated state has done.

        Returns
        -------
        dict
            The history row (evaluation.reduce_row).

        Raises
        ------
        EvaluationMissing
            Naming the clients that did not answer (policy "stop", or none answered).
        """
        parts, missing = client_parts(replies, self.nodes, rounds_done)
        self.missing = missing
        if missing and (self.on_missing == "stop" or not parts):
            who = "; ".join(f"client {c} (node {self.nodes[c]}): {why}" for c, why in sorted(missing.items()))
            raise EvaluationMissing(f"evaluation after round {rounds_done}: {who}; the history needs every client's "
                                    f"evaluation (--on-missing continue records the mean over those that answer)")
        if missing:
            print(f"fslora flower: evaluation after round {rounds_done}: no answer from clients {sorted(missing)}; "
                  f"the row is the mean over the other {len(parts)}", file=sys.stderr)
        return reduce_row(parts, algorithm)


class ClientEvaluation(RoundRecord):
    """What FSLoRAStrategy's configure_evaluate / aggregate_evaluate do for one algorithm's run: the
    clients' evaluation messages, then the row reduced from their answers, the divergence check and
    the checkpoint.

    Parameters
    ----------
    recorder : object
        The run's recorder (``fslora_ref/recorder.py`` protocol: a FederatedRecorder).
    history : History or dict or None
        The run's history (row 0 made before ``start``).
    algorithm : Algorithm
        The algorithm.
    config : FedConfig
        The run's configuration.
    checkpoint : str or None
        Rewritten after every round.
    identity : dict
        The checkpoint's identity.
    on_round : callable or None
        ``on_round(t, row)`` after each round.
    """

    by_clients = True

    def messages(self, state, rounds_done):
        """The EVALUATE messages for ``state``.

        Parameters
        ----------
        state : ServerState
            The server state.
        rounds_done : int
            The rounds it has done.

        Returns
        -------
        list of Message
        """
        return evaluate_messages(self.algorithm, state, self.recorder.problem, self.config, self.recorder.nodes,
                                 rounds_done)

    def after_round(self, round_index, replies, state, plans, uploads) -> dict:
        """Record round ``round_index``'s row from the evaluation replies, checkpoint, report.

        Parameters
        ----------
        round_index : int
            The round (0-based).
        replies : list of Message
            The EVALUATE replies.
        state : ServerState
            The server state after the round.
        plans : list of ClientPlan
            The round's plans.
        uploads : list of Upload
            The round's uploads.

        Returns
        -------
        dict
            The row recorded.
        """
        self.recorder.rounds_done = round_index + 1
        self.recorder.pending = self.recorder.reduce(self.algorithm, replies, round_index + 1)
        return self.record(round_index, state, plans, uploads)


class FlowerSimulation(FlowerRun):
    """``run_fn`` for ``fslora_ref.simulate.run_all``: one algorithm's run over Flower, with
    ``fslora_ref.federation.run``'s signature and result, the clients evaluating.

    Parameters
    ----------
    grid : Grid
        Flower's Grid.
    nodes : dict
        ``{client: node id}``.
    timeout : float
        Seconds to wait for a round's replies (train, then evaluate).
    poll : float
        Seconds between pulls.
    ledger : Ledger, optional
        Each round's entry is appended.
    held_out : Problem, optional
        A server-side held-out set (one client): ``Strategy.start``'s ``evaluate_fn`` evaluates the
        global model on it before the first round and after each, into the ledger's ``server-eval``
        ({algorithm: {rounds done: loss}}); not part of history.json.
    **strategy_options
        on_missing, on_bad_update, max_update_norm, dtype (FSLoRAStrategy's).
    """

    def __init__(self, grid, nodes, *, timeout, poll=0.5, ledger=None, held_out=None, **strategy_options):
        super().__init__(grid, nodes, timeout=timeout, poll=poll, ledger=ledger, **strategy_options)
        self.held_out = held_out

    def default_recorder(self, problem):
        """The recorder whose rows the clients' evaluations make (:class:`FederatedRecorder`).

        Parameters
        ----------
        problem : ServerProblem
            The server's problem (its divergence diagnosis asks the clients' nodes).

        Returns
        -------
        FederatedRecorder
        """
        problem.remote_loss = self.remote_loss(problem)
        return FederatedRecorder(problem, self.grid, self.nodes, self.timeout, self.options.get("on_missing", "stop"))

    def first_history(self, recorder, algorithm, state, config):
        """Row 0, from an evaluation exchange made before ``start`` (``start`` asks the clients only
        after a round).

        Parameters
        ----------
        recorder : FederatedRecorder
            The run's recorder.
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The initial state.
        config : FedConfig
            The run's configuration.

        Returns
        -------
        History
        """
        return recorder.start(algorithm, state, config)

    def evaluation(self, *record_args) -> ClientEvaluation:
        """The strategy's ``evaluation``: the clients' (:class:`ClientEvaluation`).

        Parameters
        ----------
        *record_args
            :class:`~fslora_flower.start_run.RoundRecord`'s parameters.

        Returns
        -------
        ClientEvaluation
        """
        return ClientEvaluation(*record_args)

    def evaluate_fn(self, strategy, evaluation):
        """``Strategy.start``'s evaluate_fn on the server's held-out set (None without one).

        Parameters
        ----------
        strategy : FSLoRAStrategy
            Its state is evaluated (the ArrayRecord ``start`` passes holds only the factors).
        evaluation : ClientEvaluation
            The run's evaluation (its problem is the server's model).

        Returns
        -------
        callable or None
            ``evaluate_fn(server_round, arrays) -> MetricRecord``.
        """
        if self.held_out is None:
            return None
        problem = evaluation.recorder.problem

        def evaluate_fn(server_round, arrays):
            algorithm, config = strategy.algorithm, strategy.config
            with np.errstate(all="ignore"):
                loss = float(self.held_out.loss(0, algorithm.global_weights(strategy.state, problem, config)))
            loss = loss if np.isfinite(loss) else None
            if self.ledger is not None:
                done = strategy.first_round + int(server_round)
                self.ledger.run.setdefault("server-eval", {}).setdefault(algorithm.name, {})[str(done)] = loss
                self.ledger.save()
            return MetricRecord({"held-out-loss": loss}) if loss is not None else None
        return evaluate_fn

    def remote_loss(self, problem):
        """``ServerProblem.remote_loss``: client i's full-data loss at LayerFactors, asked of its
        node (NaN if it does not answer; only the divergence diagnosis asks).

        Parameters
        ----------
        problem : ServerProblem
            The server's problem.

        Returns
        -------
        callable
            ``loss(client, factors) -> float``.
        """
        def loss(client, factors):
            replies = self.grid.send_and_receive([probe_message(client, self.nodes[client], factors, -1)],
                                                 timeout=self.timeout)
            ok = [r for r in replies if r.has_content()]
            return float(dict(ok[0].content["fslora.loss"])["loss"]) if ok else float("nan")
        return loss


__all__ = ["EvaluationMissing", "FlowerSimulation", "PollingGrid"]
