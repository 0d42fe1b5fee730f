"""`fslora flower simulate` on the server: Flower's ``Strategy.start`` drives the rounds, the clients
evaluate, the server holds no client data.

Per algorithm of the job: one FSLoRAStrategy (made once, never per round) and one
``strategy.start(grid, num_rounds=rounds left)``. Each Flower round is train (configure_train /
aggregate_train: the reference's rules, update validation), then evaluate (configure_evaluate:
every client evaluates the new global model on its own data; aggregate_evaluate: the server
reduces the answers to the in-process history row, evaluation.py, then checkpoints). What
``Strategy.start`` does not do is done around it, with its own pieces:

- the initial row (row 0) and the resumed checkpoint's check are the same evaluation exchange,
  made before ``start`` (``start`` evaluates on the clients only after a round; its
  ``evaluate_fn`` is the server's own, centralised evaluation);
- --resume: the strategy starts at the checkpoint's round (``first_round``), ``start`` runs the
  rounds left; the checkpoint is written after every round by aggregate_evaluate;
- Grid.send_and_receive sleeps 3 s between pulls; ``start`` is handed a grid whose
  send_and_receive polls every ``poll-interval`` and reports the nodes the SuperLink refused.

History, checkpoints and --resume are those of ``fslora_ref.simulate.run_all`` (this module is its
``run_fn``): a run over Flower writes the in-process run's bytes.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord

from fslora_ref.client import DivergenceError
from fslora_ref.federation import load_checkpoint, save_checkpoint
from fslora_ref.recorder import HistoryRecorder

from .evaluation import EvaluationMissing, client_parts, evaluate_messages, probe_message, reduce_row
from .exchange import exchange
from .strategy import FSLoRAStrategy


class PollingGrid:
    """The Grid handed to ``Strategy.start``: Flower's Grid, but send_and_receive polls every
    ``poll`` seconds (Flower's sleeps 3 s) and tells ``strategy`` which nodes the SuperLink
    refused (a node that went away is named at once instead of waited for).

    Parameters
    ----------
    grid : Grid
        Flower's Grid.
    poll : float
        Seconds between pulls.
    """

    def __init__(self, grid, poll: float):
        self.grid, self.poll, self.strategy = grid, poll, None

    def send_and_receive(self, messages, *, timeout=None):
        """Push ``messages`` and return the replies that arrived within ``timeout`` seconds.

        Parameters
        ----------
        messages : iterable of Message
        timeout : float, optional
            Seconds (None: an hour, Flower's default).

        Returns
        -------
        list of Message
        """
        replies, refused = exchange(self.grid, messages, 3600.0 if timeout is None else timeout, self.poll)
        if self.strategy is not None:
            self.strategy.refused = refused
        return replies

    def __getattr__(self, name):
        return getattr(self.grid, name)


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


class RoundEvaluation:
    """What FSLoRAStrategy's configure_evaluate / aggregate_evaluate do for one algorithm's run:
    the evaluation messages, then the row, the divergence check and the checkpoint (as
    ``fslora_ref.federation.run`` does after each round)."""

    def __init__(self, recorder, history, algorithm, config, checkpoint, identity, on_round):
        self.recorder, self.history, self.algorithm, self.config = recorder, history, algorithm, config
        self.checkpoint, self.identity, self.on_round = checkpoint, identity, on_round

    @property
    def missing(self) -> dict:
        """``{client: why}``: the clients missing from the last evaluation."""
        return self.recorder.missing

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
        row = self.recorder.record(self.history, self.algorithm, state, self.config, round_index, plans, uploads)
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self.algorithm.name, self.config, state, self.history, round_index + 1,
                            identity=self.identity)
        if self.on_round is not None:
            self.on_round(round_index, row)
        return row


def factors_record(state) -> ArrayRecord:
    """The server's rank-r factors as the ArrayRecord ``Strategy.start`` starts from (bookkeeping only).

    Parameters
    ----------
    state : ServerState
        ``layers``: [(B_l: (m_l, r), A_l: (r, n_l))].

    Returns
    -------
    ArrayRecord
    """
    return ArrayRecord({f"{l}.{name}": Array(np.ascontiguousarray(x))
                        for l, pair in enumerate(state.layers) for name, x in zip("BA", pair)})


class FlowerSimulation:
    """``run_fn`` for ``fslora_ref.simulate.run_all``: one algorithm's run over Flower, with
    ``fslora_ref.federation.run``'s signature and result.

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
        self.grid, self.nodes, self.timeout, self.ledger = PollingGrid(grid, poll), dict(nodes), timeout, ledger
        self.held_out, self.options = held_out, strategy_options

    def evaluate_fn(self, strategy, problem):
        """``Strategy.start``'s evaluate_fn on the server's held-out set (None without one).

        Parameters
        ----------
        strategy : FSLoRAStrategy
            Its state is evaluated (the ArrayRecord ``start`` passes holds only the factors).
        problem : ServerProblem
            The server's model.

        Returns
        -------
        callable or None
            ``evaluate_fn(server_round, arrays) -> MetricRecord``.
        """
        if self.held_out is None:
            return None

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

    def __call__(self, algorithm, problem, config, *, checkpoint=None, resume=False, on_round=None, identity=None,
                 **_ignored):
        """Run ``algorithm`` over Flower (see :func:`fslora_ref.federation.run`).

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm.
        problem : ServerProblem
            The server's problem.
        config : FedConfig
            The run's configuration.
        checkpoint : str, optional
            Rewritten after every round.
        resume : bool, default False
            Continue ``checkpoint``.
        on_round : callable, optional
            ``on_round(t, row)`` after each round.
        identity : dict, optional
            Extra fields a checkpoint must match.

        Returns
        -------
        History
        """
        problem.remote_loss = self.remote_loss(problem)
        recorder = FederatedRecorder(problem, self.grid, self.nodes, self.timeout,
                                     self.options.get("on_missing", "stop"))
        identity = recorder.identity(algorithm, identity or {})
        resuming = resume and checkpoint is not None and os.path.exists(checkpoint)
        if resuming:
            state, history, start = load_checkpoint(checkpoint, algorithm.name, config, identity=identity,
                                                    layer_shapes=problem.layer_shapes)
            recorder.rounds_done = start
            history = recorder.resumed(checkpoint, algorithm, state, history, config, start)
        else:
            state, start = algorithm.init(problem, config), 0
            history = recorder.start(algorithm, state, config)
        evaluation = RoundEvaluation(recorder, history, algorithm, config, checkpoint, identity, on_round)
        strategy = FSLoRAStrategy(algorithm, problem, config, self.nodes, state=state, reply_timeout=self.timeout,
                                  first_round=start, ledger=self.ledger, evaluation=evaluation, **self.options)
        self.grid.strategy = strategy
        try:
            strategy.start(self.grid, factors_record(state), num_rounds=config.rounds - start, timeout=self.timeout,
                           evaluate_fn=self.evaluate_fn(strategy, problem))
        except DivergenceError as exc:
            if strategy.phase == "train":      # as the reference's run loop words a round's divergence
                raise DivergenceError(f"{algorithm.name}: {exc}") from None
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            if not (resuming and strategy.rounds_completed == 0 and strategy.phase == "train"):
                raise
            raise ValueError(f"checkpoint {checkpoint}: its server state does not fit this run "
                             f"({type(exc).__name__}: {exc})") from None
        return recorder.finish(history, strategy.state)


__all__ = ["EvaluationMissing", "FlowerSimulation", "PollingGrid"]
