"""The one driver loop: rounds, checkpoint/resume, stopping a diverged run, the history.

    history = run(get_algorithm("fslora"), problem, config)

Row t of the history describes the server state after t rounds (row 0: the initial state).
All randomness is keyed by (round, client, layer), so a run resumed from a checkpoint is
bit-identical to an uninterrupted one. Checkpoints are data only (checkpoint.py). What a run
records (and when it has diverged) is its recorder's (recorder.py): the NumPy problem's losses
by default, held-out evaluations for the LLM bridge, which runs through this same loop.
"""
from __future__ import annotations

import os

import numpy as np

from .checkpoint import (algorithm_identity, checkpoint_header, checkpoint_path, find_checkpoint,  # noqa: F401
                         load_checkpoint, problem_identity, read_checkpoint_header, save_checkpoint)
from .client import DivergenceError
from .config import FedConfig
from .divergence import DIVERGENCE_FACTOR, step_size_hint
from .history import HISTORY_KEYS, History  # noqa: F401  (re-exported)
from .outputs import atomic_write_bytes  # noqa: F401  (re-exported: older imports use it from here)
from .problems.sketched import MAX_ENUMERATION, global_sketched_loss, sketched_loss  # noqa: F401
from .recorder import HistoryRecorder, check_resumed_state, evaluate  # noqa: F401  (re-exported)


def run_round(algorithm, state, problem, config: FedConfig, round_index: int):
    """One round: configure, train every participant, aggregate.

    Parameters
    ----------
    algorithm : Algorithm
        The federated algorithm (``get_algorithm(name)``).
    state : ServerState
        The server state before the round.
    problem : Problem
        The clients' data and model.
    config : FedConfig
        The run's configuration.
    round_index : int
        The round (0-based); keys the round's random streams.

    Returns
    -------
    state : ServerState
        The aggregated server state after the round.
    plans : list of ClientPlan
        What each participating client was sent.
    uploads : list of Upload
        What each participant returned, in the order of ``plans``.

    Raises
    ------
    DivergenceError
        If the aggregated server factors are not all finite.
    """
    plans = algorithm.configure_round(state, problem, config, round_index, config.participants(round_index))
    uploads = [algorithm.client_update(plan, problem, config, round_index) for plan in plans]
    new_state = algorithm.aggregate(state, plans, uploads, config)
    check_finite_state(new_state, round_index, plans, config)
    return new_state, plans, uploads


def check_finite_state(state, round_index: int, plans, config: FedConfig) -> None:
    """Raise DivergenceError naming the layer (and the step size to lower) if the aggregated
    server factors are not all finite.

    Parameters
    ----------
    state : ServerState
        The aggregated server state.
    round_index : int
        The round it was aggregated in (for the message).
    plans : list of ClientPlan
        The round's plans (their clients are named in the message).
    config : FedConfig
        The run's configuration (for the step-size hint).

    Raises
    ------
    DivergenceError
        If any factor of any layer has a NaN or infinite entry.
    """
    for l, pair in enumerate(state.layers):
        if not all(np.isfinite(x).all() for x in pair):
            raise DivergenceError(f"round {round_index}: server factors of layer {l} became non-finite after "
                                  f"aggregation (clients {[p.client for p in plans]}); {step_size_hint(config, True)}")


def open_run(algorithm, problem, config: FedConfig, recorder, checkpoint, resume: bool, identity):
    """What every run loop (this module's :func:`run`, the Flower app's) does before its first round.

    Checks the budgets against the problem's clients, completes the checkpoint identity with the
    recorder's fields and, when resuming from an existing checkpoint, loads it and lets the recorder
    check the loaded history.

    Parameters
    ----------
    algorithm : Algorithm
        The algorithm.
    problem : Problem
        The federated problem.
    config : FedConfig
        The run's configuration.
    recorder : object
        The run's recorder (see ``fslora_ref/recorder.py``).
    checkpoint : str or os.PathLike or None
        The checkpoint path (None: no checkpoint).
    resume : bool
        Continue from ``checkpoint`` if it exists.
    identity : dict or None
        Extra fields a checkpoint must match.

    Returns
    -------
    tuple
        ``(identity, resumed)``: the completed identity, and ``(state, history, start_round)`` of the
        loaded checkpoint, or None for a fresh run.

    Raises
    ------
    ValueError
        If the budgets do not match the problem's clients, or the checkpoint does not fit the run.
    """
    if problem.n_clients != config.n_clients:
        raise ValueError(f"budgets must have one entry per client ({problem.n_clients}), got {config.n_clients}")
    identity = recorder.identity(algorithm, identity or {})
    if not (resume and checkpoint is not None and os.path.exists(checkpoint)):
        return identity, None
    state, history, start = load_checkpoint(checkpoint, algorithm.name, config, identity=identity,
                                            layer_shapes=problem.layer_shapes)
    return identity, (state, recorder.resumed(checkpoint, algorithm, state, history, config, start), start)


def run(algorithm, problem, config: FedConfig, *, checkpoint: str | os.PathLike | None = None,
        resume: bool = False, on_round=None, stop_after: int | None = None, identity: dict | None = None,
        divergence_factor: float | None = DIVERGENCE_FACTOR, round_fn=None, recorder=None):
    """Run ``config.rounds`` rounds of ``algorithm`` on ``problem``; returns the history.

    Parameters
    ----------
    algorithm : Algorithm
        The federated algorithm (``get_algorithm(name, **options)``).
    problem : Problem
        The clients' data and model; ``problem.n_clients`` must equal ``config.n_clients``.
    config : FedConfig
        Rank, budgets, rounds, step sizes, seed.
    checkpoint : str or os.PathLike, optional
        A path rewritten atomically after every round (see :func:`checkpoint_path`).
    resume : bool, default False
        Continue an existing ``checkpoint``: its algorithm, config (except ``rounds``, which may
        grow) and identity (the recorder's: by default :func:`problem_identity`, then
        ``identity``, then the algorithm's variant options, :func:`algorithm_identity`) must
        match, or a ValueError names every differing field.
    on_round : callable, optional
        ``on_round(t, row)``, called after each round (and its checkpoint).
    stop_after : int, optional
        Stop after that many rounds in total (simulates an interruption).
    identity : dict, optional
        Extra fields a resumed checkpoint must match.
    divergence_factor : float or None, default DIVERGENCE_FACTOR
        Raise DivergenceError once f(X^t) > factor * f(X^0) or a recorded value is non-finite
        (None: only non-finite values). Used by the default recorder.
    round_fn : callable, optional
        How one round is executed, with :func:`run_round`'s signature and result (default: in
        this process; the Flower app passes one that trains the clients on remote nodes).
    recorder : object, optional
        What the run records (see ``fslora_ref/recorder.py``); default a :class:`HistoryRecorder`
        of ``problem`` with ``divergence_factor`` (the LLM bridge passes its own, with held-out
        evaluations in a dict).

    Returns
    -------
    History
        The recorder's history (by default a :class:`History`: row t is the server state after t
        rounds, row 0 the initial state; ``history.final_state`` the last server state).

    Raises
    ------
    ValueError
        If the budgets do not match the problem's clients, or a checkpoint does not fit the run.
    DivergenceError
        If the run diverges (see ``divergence_factor``).

    Examples
    --------
    >>> from fslora_ref import FedConfig, get_algorithm, make_problem, run
    >>> problem = make_problem("least_squares", n_clients=2, m=6, n=5, seed=0)
    >>> config = FedConfig(rank=4, budgets=(2, 4), local_steps=2, lr=0.05, rounds=3, seed=0)
    >>> history = run(get_algorithm("fslora"), problem, config)
    >>> len(history["loss"]), history.n_rounds
    (4, 3)
    >>> bool(history["loss"][-1] < history["loss"][0])
    True
    """
    round_fn = round_fn or run_round
    recorder = recorder if recorder is not None else HistoryRecorder(problem, divergence_factor)
    identity, resumed = open_run(algorithm, problem, config, recorder, checkpoint, resume, identity)
    if resumed is not None:
        state, history, start = resumed
    else:
        state = algorithm.init(problem, config)
        history = recorder.start(algorithm, state, config)
        start = 0
    last = config.rounds if stop_after is None else min(config.rounds, stop_after)
    for t in range(start, last):
        try:
            state, plans, uploads = round_fn(algorithm, state, problem, config, t)
        except DivergenceError as exc:
            raise DivergenceError(f"{algorithm.name}: {exc}") from None
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            if not (resumed is not None and t == start):
                raise
            raise ValueError(f"checkpoint {checkpoint}: its server state does not fit this run "
                             f"({type(exc).__name__}: {exc})") from None
        row = recorder.record(history, algorithm, state, config, t, plans, uploads)
        if checkpoint is not None:
            save_checkpoint(checkpoint, algorithm.name, config, state, history, t + 1, identity=identity)
        if on_round is not None:
            on_round(t, row)
    return recorder.finish(history, state)
