"""One algorithm's run over Flower: Flower's ``Strategy.start`` drives the rounds.

:class:`FlowerRun` is a ``run_fn``: called like ``fslora_ref.federation.run`` (the reference's
driver loop, which ``fslora simulate`` and ``fslora finetune`` both run) and returning what it
returns, so history, checkpoints and --resume are the in-process ones. Per call: one
FSLoRAStrategy (made once, never per round) and one ``strategy.start(grid, num_rounds=rounds
left)``; each Flower round is train (configure_train / aggregate_train: the reference's rules,
update validation), then evaluation. What ``start`` does not do is done around it, with the same
strategy:

- --resume: the checkpoint is loaded before ``start``; the strategy starts at its round
  (``first_round``) and ``start`` runs the rounds left (``start`` always counts from 1);
- the row, the divergence stop and the checkpoint after every round happen at the round's last
  hook (``start`` has no other per-round hook);
- Grid.send_and_receive sleeps 3 s between pulls; ``start`` is handed a :class:`PollingGrid`.

Who evaluates the global model:

- a finetune job (:class:`FlowerRun` with the bridge's recorder): the server, on its own
  held-out set, in ``start``'s ``evaluate_fn`` (Flower's centralised evaluation, called before
  round 1 and after each round): row 0 of a fresh run, then the recorder's own schedule
  (``--eval-every`` and the last round); the round's row and checkpoint follow there. No
  evaluation message is sent to the clients.
- a simulate job (:class:`~fslora_flower.simulate_run.FlowerSimulation`): the clients, on their own
  data, through configure_evaluate / aggregate_evaluate.
"""
from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, MetricRecord

from fslora_ref.client import DivergenceError
from fslora_ref.federation import open_run, save_checkpoint

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


class RoundRecord:
    """What follows a round, as ``fslora_ref.federation.run`` does it: the recorder's row, the
    checkpoint, ``on_round``. The base of the strategy's ``evaluation`` (who evaluates is the
    subclass's business).

    Parameters
    ----------
    recorder : object
        The run's recorder (``fslora_ref/recorder.py`` protocol).
    history : History or dict or None
        The run's history (None until row 0 is made, for a fresh run evaluated by ``evaluate_fn``).
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

    by_clients = False          # configure_evaluate sends messages and aggregate_evaluate ends the round

    def __init__(self, recorder, history, algorithm, config, checkpoint, identity, on_round):
        self.recorder, self.history, self.algorithm, self.config = recorder, history, algorithm, config
        self.checkpoint, self.identity, self.on_round = checkpoint, identity, on_round

    @property
    def missing(self) -> dict:
        """``{client: why}``: the clients missing from the last evaluation (none for the server's own)."""
        return getattr(self.recorder, "missing", {})

    def messages(self, state, rounds_done) -> list:
        """The EVALUATE messages for ``state``: none (the server evaluates).

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
        return []

    def record(self, round_index, state, plans, uploads) -> dict:
        """Record round ``round_index``'s row, checkpoint, call ``on_round``.

        Parameters
        ----------
        round_index : int
            The round (0-based).
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
        row = self.recorder.record(self.history, self.algorithm, state, self.config, round_index, plans, uploads)
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self.algorithm.name, self.config, state, self.history, round_index + 1,
                            identity=self.identity)
        if self.on_round is not None:
            self.on_round(round_index, row)
        return row


class ServerEvaluation(RoundRecord):
    """The recorder evaluates the global model on the server's own held-out set, in
    ``Strategy.start``'s ``evaluate_fn``: row 0 of a fresh run (``recorder.start``), then after each
    round, where the round's row is recorded (``recorder.record`` evaluates on its own schedule) and
    checkpointed.

    Parameters
    ----------
    recorder : object
        The run's recorder (``fslora_ref/recorder.py`` protocol; the bridge's FinetuneRecorder).
    history : History or dict or None
        The run's history (None for a fresh run: ``evaluate_fn`` makes row 0).
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

    def evaluate_fn(self, strategy):
        """``Strategy.start``'s evaluate_fn for ``strategy``'s run.

        Parameters
        ----------
        strategy : FSLoRAStrategy
            Its state is evaluated; after a round it closes the round's ledger entry.

        Returns
        -------
        callable
            ``evaluate_fn(server_round, arrays) -> MetricRecord or None``: the held-out evaluation
            made at that round (None if the recorder made none then, or for a resumed run's round 0,
            whose evaluations are in the checkpoint).
        """
        def evaluate_fn(server_round, arrays):
            if int(server_round) == 0:
                if self.history is not None:
                    return None
                self.history = self.recorder.start(self.algorithm, strategy.state, self.config)
                return held_out_metrics(self.history, strategy.first_round)
            t = strategy.round_of(server_round)
            plans, uploads, _ = strategy.last
            if hasattr(self.recorder, "round_seconds"):     # the row's wall time: the round's train exchange
                self.recorder.round_seconds = strategy.entry.get("seconds-train")
            strategy.end_round(lambda: self.record(t, strategy.state, plans, uploads))
            return held_out_metrics(self.history, t + 1)
        return evaluate_fn


def held_out_metrics(history, rounds_done: int):
    """The held-out evaluation a bridge history recorded after ``rounds_done`` rounds, for Flower's log.

    Parameters
    ----------
    history : dict
        A bridge history (``"eval"``: [{"round", "mean", ...}]).
    rounds_done : int
        The round.

    Returns
    -------
    MetricRecord or None
        ``{"held-out-mean": mean accuracy}``; None if no evaluation was made at that round.
    """
    evals = history.get("eval") if isinstance(history, dict) else None
    if not evals or evals[-1].get("round") != rounds_done:
        return None
    return MetricRecord({"held-out-mean": float(evals[-1]["mean"])})


class FlowerRun:
    """``run_fn`` for the run loops (``fslora_ref.federation.run``'s signature and result): one
    algorithm's run over Flower, its rounds driven by ``Strategy.start`` (see the module docstring).

    This class evaluates with the caller's recorder on the server (:class:`ServerEvaluation`, the
    finetune job); :class:`~fslora_flower.simulate_run.FlowerSimulation` has the clients evaluate.

    Parameters
    ----------
    grid : Grid
        Flower's Grid.
    nodes : dict
        ``{client: node id}``.
    timeout : float
        Seconds to wait for a round's replies.
    poll : float
        Seconds between pulls.
    ledger : Ledger, optional
        Each round's entry is appended.
    **strategy_options
        on_missing, on_bad_update, max_update_norm, dtype (FSLoRAStrategy's).
    """

    def __init__(self, grid, nodes, *, timeout, poll=0.5, ledger=None, **strategy_options):
        self.grid, self.nodes, self.timeout, self.ledger = PollingGrid(grid, poll), dict(nodes), timeout, ledger
        self.options = strategy_options

    # -- what the subclass changes: who evaluates ------------------------------------------------
    def default_recorder(self, problem):
        """The recorder when the run loop passes none (here: none; the run loop must pass its own).

        Parameters
        ----------
        problem : object
            The run's problem.

        Raises
        ------
        TypeError
            Always: the server evaluates with the run loop's recorder.
        """
        raise TypeError("FlowerRun evaluates with the run loop's recorder: pass recorder=")

    def first_history(self, recorder, algorithm, state, config):
        """A fresh run's history before ``start`` (None: ``evaluate_fn`` makes row 0).

        Parameters
        ----------
        recorder : object
            The run's recorder.
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The initial state.
        config : FedConfig
            The run's configuration.

        Returns
        -------
        None
        """
        return None

    def evaluation(self, *record_args) -> RoundRecord:
        """The strategy's ``evaluation`` (:class:`ServerEvaluation` here).

        Parameters
        ----------
        *record_args
            :class:`RoundRecord`'s parameters.

        Returns
        -------
        RoundRecord
        """
        return ServerEvaluation(*record_args)

    def evaluate_fn(self, strategy, evaluation):
        """``Strategy.start``'s evaluate_fn (the server's held-out evaluation and the round's record).

        Parameters
        ----------
        strategy : FSLoRAStrategy
            The run's strategy.
        evaluation : ServerEvaluation
            Its evaluation.

        Returns
        -------
        callable
        """
        return evaluation.evaluate_fn(strategy)

    # -- the run -------------------------------------------------------------------------------
    def __call__(self, algorithm, problem, config, *, checkpoint=None, resume=False, on_round=None, identity=None,
                 stop_after=None, recorder=None, **_ignored):
        """Run ``algorithm`` over Flower (see :func:`fslora_ref.federation.run`; ``round_fn`` is not
        used: the strategy runs the rounds).

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm (or the bridge's TorchClients: its server rules are the algorithm's).
        problem : ServerProblem or ModelShapes
            The server's view (no client data).
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
        stop_after : int, optional
            Stop after that many rounds in total.
        recorder : object, optional
            What the run records (default :meth:`default_recorder`).

        Returns
        -------
        History or dict
            The recorder's history.

        Raises
        ------
        ValueError
            If the budgets do not match the clients, or a checkpoint does not fit the run.
        DivergenceError
            If the run diverges.
        """
        recorder = self.default_recorder(problem) if recorder is None else recorder
        identity, resumed = open_run(algorithm, problem, config, recorder, checkpoint, resume, identity)
        if resumed is not None:
            state, history, start = resumed
        else:
            state, start = algorithm.init(problem, config), 0
            history = self.first_history(recorder, algorithm, state, config)
        evaluation = self.evaluation(recorder, history, algorithm, config, checkpoint, identity, on_round)
        strategy = FSLoRAStrategy(algorithm, problem, config, self.nodes, state=state, reply_timeout=self.timeout,
                                  first_round=start, ledger=self.ledger, evaluation=evaluation, **self.options)
        self.grid.strategy = strategy
        last = config.rounds if stop_after is None else min(config.rounds, stop_after)
        try:
            strategy.start(self.grid, factors_record(state), num_rounds=max(0, last - start), timeout=self.timeout,
                           evaluate_fn=self.evaluate_fn(strategy, evaluation))
        except DivergenceError as exc:
            if strategy.phase == "train":      # as the reference's run loop words a round's divergence
                raise DivergenceError(f"{algorithm.name}: {exc}") from None
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            if not (resumed is not None and strategy.rounds_completed == 0 and strategy.phase == "train"):
                raise
            raise ValueError(f"checkpoint {checkpoint}: its server state does not fit this run "
                             f"({type(exc).__name__}: {exc})") from None
        return recorder.finish(evaluation.history, strategy.state)


__all__ = ["FlowerRun", "PollingGrid", "RoundRecord", "ServerEvaluation", "factors_record", "held_out_metrics"]
