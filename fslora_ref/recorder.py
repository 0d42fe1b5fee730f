"""What a run records, round by round, for the one driver loop (:func:`fslora_ref.federation.run`).

The loop owns rounds, resume, per-round checkpoints and the wrapping of errors; what a run
*records* is its recorder's, an object with five methods:

    identity(algorithm, given) -> dict what, besides the config, a checkpoint must match
                                       (``given``: the caller's identity, ``run(identity=...)``)
    start(algorithm, state, config) -> history          row 0, from the initial server state
    resumed(path, algorithm, state, history, config, next_round) -> history
                                       a history loaded from a checkpoint, checked against its state
    record(history, algorithm, state, config, round_index, plans, uploads) -> row
                                       one round: evaluate, stop a diverged run, append
    finish(history, state) -> history  after the last round

:class:`HistoryRecorder` (the default) records a ``fslora_ref`` problem's global loss, gradient
norms and communication in a :class:`~fslora_ref.history.History` and stops a diverging run
(``fslora_ref.divergence``); the LLM bridge's recorder (``llm_bridge/recorder.py``) records
held-out evaluations in a dict. Either history is saved by the same ``save_checkpoint``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checkpoint import algorithm_identity, problem_identity
from .client import DivergenceError
from .divergence import DIVERGENCE_FACTOR, diverged, raise_divergence
from .history import History
from .lora import LayerFactors


@dataclass(frozen=True)
class ClientEvaluation:
    """Client i's share of a history row, at the server's model on client i's full data.

    A federated server gets these from the clients' nodes (``fslora_flower.evaluation``); either
    way :func:`reduce_evaluations` makes the row, so its bits do not depend on where f_i was computed.

    Parameters
    ----------
    loss : float
        f_i.
    weight_grads : list of ndarray
        grad_W f_i per layer, shape (m_l, n_l).
    factor_grads : list of ndarray or None
        grad_{[B;A]} f_i at the server's factors, ``[dB_0: (m_0, r), dA_0: (r, n_0), dB_1, ...]``;
        None when the algorithm has no trainable factors.
    """

    loss: float
    weight_grads: list
    factor_grads: list | None = None


def evaluate_client(problem, client: int, weights, layers=None, s: float = 1.0) -> ClientEvaluation:
    """Client ``client``'s f_i and gradients at the server's dense weights (and factors).

    Parameters
    ----------
    problem : Problem
        The problem.
    client : int
        The client i.
    weights : list of ndarray
        W_l, shape (m_l, n_l) (``algorithm.global_weights``).
    layers : list of tuple of ndarray, optional
        ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l) (``algorithm.global_factors``); None: no
        factor gradient.
    s : float, default 1.0
        The LoRA scaling.

    Returns
    -------
    ClientEvaluation
    """
    loss = problem.loss(client, weights)
    _, weight_grads = problem.loss_and_weight_grads(client, weights)
    factor_grads = None
    if layers is not None:
        _, g = problem.loss_and_factor_grads(client, [LayerFactors(B, A, s * np.ones(B.shape[1])) for B, A in layers])
        factor_grads = [x for pair in g for x in pair]
    return ClientEvaluation(loss, weight_grads, factor_grads)


def reduce_evaluations(parts: list) -> dict:
    """The row from the clients' evaluations: f = (1/N) sum_i f_i and the norms of the mean
    gradients, summed left to right in the order of ``parts``.

    Parameters
    ----------
    parts : list of ClientEvaluation
        One per client, in client order.

    Returns
    -------
    dict
        ``"loss"``, ``"grad_norm_weights"`` and, when the parts have factor gradients,
        ``"grad_norm_factors"``.
    """
    row = {"loss": float(np.mean([part.loss for part in parts])),
           "grad_norm_weights": _norm_of_mean([part.weight_grads for part in parts])}
    if parts[0].factor_grads is not None:
        row["grad_norm_factors"] = _norm_of_mean([part.factor_grads for part in parts])
    return row


def _norm_of_mean(per_client: list) -> float:
    """``|| (g_0 + g_1 + ... + g_{N-1}) / N ||`` over all of g_i's arrays, summed in list order."""
    total = per_client[0]
    for arrays in per_client[1:]:
        total = [a + b for a, b in zip(total, arrays)]
    mean = [t / len(per_client) for t in total]
    return float(np.sqrt(sum(np.sum(g * g) for g in mean)))


def evaluate(algorithm, state, problem, config) -> dict:
    """The history entries of server ``state``: every client's :func:`evaluate_client`, reduced by
    :func:`reduce_evaluations`, and the algorithm's own entries.

    Parameters
    ----------
    algorithm : Algorithm
        The algorithm (its global model, factors and extra entries).
    state : ServerState
        The server state.
    problem : Problem
        The problem.
    config : FedConfig
        The run's configuration.

    Returns
    -------
    dict
        ``"loss"`` and ``"grad_norm_weights"``; ``"grad_norm_factors"`` if the algorithm
        ``has_trainable_factors``; and its ``evaluate_extra``.
    """
    weights = algorithm.global_weights(state, problem, config)
    layers = algorithm.global_factors(state) if algorithm.has_trainable_factors else None
    row = reduce_evaluations([evaluate_client(problem, i, weights, layers, config.lora_scaling)
                              for i in range(problem.n_clients)])
    row.update(algorithm.evaluate_extra(state, problem, config))
    return row


def check_resumed_state(path, algorithm, state, history, problem, config, evaluate_fn=None) -> None:
    """The loaded server state must reproduce the loss its history recorded last (to 1e-9).

    Parameters
    ----------
    path : str
        The checkpoint (named in the message).
    algorithm : Algorithm
        The algorithm.
    state : ServerState
        The loaded server state.
    history : History
        The loaded history.
    problem : Problem
        The problem.
    config : FedConfig
        The run's configuration.
    evaluate_fn : callable, optional
        ``evaluate_fn(algorithm, state, config) -> row`` (default :func:`evaluate` on ``problem``;
        a federated server evaluates on the clients' nodes).

    Raises
    ------
    ValueError
        If the state and history disagree, or the state does not fit the problem.
    """
    if evaluate_fn is None:
        def evaluate_fn(algorithm, state, config):
            return evaluate(algorithm, state, problem, config)
    try:
        with np.errstate(all="ignore"):
            loss = evaluate_fn(algorithm, state, config)["loss"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"checkpoint {path}: its server state does not fit this problem "
                         f"({type(exc).__name__}: {exc})") from None
    saved = history["loss"][-1]
    if not (np.isfinite(loss) and np.isclose(loss, saved, rtol=1e-9, atol=0.0)):
        raise ValueError(f"checkpoint {path}: its server state gives loss {loss:.17g} but its history records "
                         f"{saved!r}; the file is inconsistent, refusing to resume")


class HistoryRecorder:
    """A :class:`History` of a ``fslora_ref`` problem: row t holds the loss, gradient norms and
    cumulative communication after t rounds (row 0: the initial state).

    Parameters
    ----------
    problem : Problem
        The problem evaluated every round.
    divergence_factor : float or None, default DIVERGENCE_FACTOR
        Stop with DivergenceError once f(X^t) > factor * f(X^0) or a recorded value is
        non-finite (None: only non-finite values).
    """

    def __init__(self, problem, divergence_factor: float | None = DIVERGENCE_FACTOR):
        self.problem, self.divergence_factor = problem, divergence_factor

    def evaluate(self, algorithm, state, config) -> dict:
        """The history entries of server ``state`` (:func:`evaluate` on this recorder's problem).

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The server state.
        config : FedConfig
            The run's configuration.

        Returns
        -------
        dict
            See :func:`evaluate`.
        """
        return evaluate(algorithm, state, self.problem, config)

    def identity(self, algorithm, given: dict) -> dict:
        """What a checkpoint must match besides the config.

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm.
        given : dict
            The caller's identity (``run(identity=...)``).

        Returns
        -------
        dict
            The problem's identity, then ``given``, then the algorithm's variant options.
        """
        return dict(problem_identity(self.problem), **given, **algorithm_identity(algorithm))

    def start(self, algorithm, state, config) -> History:
        """A new history whose row 0 evaluates the initial state.

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The initial server state.
        config : FedConfig
            The run's configuration.

        Returns
        -------
        History

        Raises
        ------
        DivergenceError
            If the initial loss is not finite.
        """
        history = History(algorithm.name, config.to_json(), peak_client_memory=[0] * config.n_clients)
        with np.errstate(over="ignore", invalid="ignore"):
            row = self.evaluate(algorithm, state, config)
        if diverged(row, 1.0, None):  # only non-finite values count here
            raise DivergenceError(f"{algorithm.name}: the loss at the initial model is not finite ({row}); "
                                  f"the problem's data or weights overflow")
        history.append(dict(row, upload_floats=0, download_floats=0, broadcast_floats=0, client_memory_floats=0))
        return history

    def resumed(self, path, algorithm, state, history, config, next_round) -> History:
        """A history loaded from a checkpoint, checked against its state (:func:`check_resumed_state`).

        Parameters
        ----------
        path : str
            The checkpoint.
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The loaded server state.
        history : History
            The loaded history.
        config : FedConfig
            The run's configuration.
        next_round : int
            The first round still to run.

        Returns
        -------
        History
            ``history``, its config set to this run's.
        """
        check_resumed_state(path, algorithm, state, history, self.problem, config, self.evaluate)
        history.config = config.to_json()
        return history

    def record(self, history, algorithm, state, config, round_index, plans, uploads) -> dict:
        """Evaluate the state after one round, stop a diverged run, append the row.

        Parameters
        ----------
        history : History
            The run's history.
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The server state after the round.
        config : FedConfig
            The run's configuration.
        round_index : int
            The round.
        plans : list of ClientPlan
            The round's plans (download and broadcast costs).
        uploads : list of Upload
            The round's uploads (upload costs, client memory).

        Returns
        -------
        dict
            The row appended: :func:`evaluate`'s entries and the cumulative communication.

        Raises
        ------
        DivergenceError
            If the row shows divergence (see ``divergence_factor``).
        """
        with np.errstate(over="ignore", invalid="ignore"):
            row = self.evaluate(algorithm, state, config)
        initial_loss = history["loss"][0]
        if diverged(row, initial_loss, self.divergence_factor):
            raise_divergence(algorithm, self.problem, config, round_index, row, initial_loss, plans, uploads,
                             self.divergence_factor)
        per_client = [0] * config.n_clients
        for up in uploads:
            per_client[up.client] = up.upload_floats
            history.peak_client_memory[up.client] = max(history.peak_client_memory[up.client], up.memory_floats)
        history.per_client_upload.append(per_client)
        row.update(upload_floats=history["upload_floats"][-1] + sum(per_client),
                   download_floats=history["download_floats"][-1] + sum(p.download_floats for p in plans),
                   broadcast_floats=history["broadcast_floats"][-1] + sum(p.broadcast_floats for p in plans),
                   client_memory_floats=max(up.memory_floats for up in uploads))
        history.append(row)
        return row

    def finish(self, history, state) -> History:
        """After the last round: keep the final state.

        Parameters
        ----------
        history : History
            The run's history.
        state : ServerState
            The final server state.

        Returns
        -------
        History
            ``history`` with ``final_state`` set.
        """
        history.final_state = state
        return history
