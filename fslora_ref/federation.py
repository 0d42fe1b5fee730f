"""The round loop: history, accounting, checkpoint/resume and divergence detection.

    history = run(get_algorithm("fslora"), problem, config)

Row t of the history describes the server state after t rounds (row 0: the initial state).
All randomness is keyed by (round, client, layer), so a run resumed from a checkpoint is
bit-identical to an uninterrupted one. Checkpoints are data only (checkpoint.py).
"""
from __future__ import annotations

import os

import numpy as np

from .checkpoint import (checkpoint_header, checkpoint_path, find_checkpoint, load_checkpoint,  # noqa: F401
                         problem_identity, read_checkpoint_header, save_checkpoint)
from .client import DivergenceError
from .config import FedConfig
from .divergence import DIVERGENCE_FACTOR, diverged, raise_divergence, step_size_hint
from .history import HISTORY_KEYS, History  # noqa: F401  (re-exported)
from .outputs import atomic_write_bytes  # noqa: F401  (re-exported: older imports use it from here)
from .problems.sketched import MAX_ENUMERATION, global_sketched_loss, sketched_loss  # noqa: F401


def factor_grad_norm(problem, layers, s: float) -> float:
    """||grad_{[B;A]} f|| at the server's factors (full data, unsketched objective)."""
    from .lora import LayerFactors
    factors = [LayerFactors(B, A, s * np.ones(B.shape[1])) for B, A in layers]
    total = None
    for i in range(problem.n_clients):
        _, g = problem.loss_and_factor_grads(i, factors)
        flat = [x for pair in g for x in pair]
        total = flat if total is None else [a + b for a, b in zip(total, flat)]
    return float(np.sqrt(sum(np.sum((t / problem.n_clients) ** 2) for t in total)))


def evaluate(algorithm, state, problem, config) -> dict:
    """The history entries of server ``state``: the global loss and weight-gradient norm, the
    factor-gradient norm if the algorithm ``has_trainable_factors``, and its ``evaluate_extra``."""
    weights = algorithm.global_weights(state, problem, config)
    loss = problem.global_loss(weights)
    row = {"loss": loss,
           "grad_norm_weights": float(np.sqrt(sum(np.sum(g * g) for g in problem.global_weight_grads(weights))))}
    if algorithm.has_trainable_factors:
        row["grad_norm_factors"] = factor_grad_norm(problem, algorithm.global_factors(state), config.lora_scaling)
    row.update(algorithm.evaluate_extra(state, problem, config))
    return row


def run_round(algorithm, state, problem, config: FedConfig, round_index: int):
    """One round: configure, train every participant, aggregate. Returns (state, plans, uploads)."""
    plans = algorithm.configure_round(state, problem, config, round_index, config.participants(round_index))
    uploads = [algorithm.client_update(plan, problem, config, round_index) for plan in plans]
    new_state = algorithm.aggregate(state, plans, uploads, config)
    check_finite_state(new_state, round_index, plans, config)
    return new_state, plans, uploads


def check_finite_state(state, round_index: int, plans, config: FedConfig) -> None:
    """DivergenceError naming the layer (and the step size to lower) if the aggregated server
    factors are not all finite."""
    for l, pair in enumerate(state.layers):
        if not all(np.all(np.isfinite(x)) for x in pair):
            raise DivergenceError(f"round {round_index}: server factors of layer {l} became non-finite after "
                                  f"aggregation (clients {[p.client for p in plans]}); {step_size_hint(config, True)}")


def run(algorithm, problem, config: FedConfig, *, checkpoint: str | os.PathLike | None = None,
        resume: bool = False, on_round=None, stop_after: int | None = None, identity: dict | None = None,
        divergence_factor: float | None = DIVERGENCE_FACTOR, round_fn=None) -> History:
    """Run ``config.rounds`` rounds of ``algorithm`` on ``problem``.

    checkpoint: path rewritten atomically after every round (see :func:`checkpoint_path`);
    with ``resume=True`` an existing checkpoint is continued: its algorithm, config (except
    ``rounds``, which may grow) and identity (:func:`problem_identity` plus ``identity``) must
    match, or a ValueError names every differing field. on_round(t, row) is called after each
    round. stop_after: stop after that many rounds in total (simulates an interruption).
    divergence_factor: raise DivergenceError once f(X^t) > factor * f(X^0) or a recorded value
    is non-finite (None: only non-finite values). round_fn: how one round is executed, with
    :func:`run_round`'s signature and result (default: in this process; the Flower app passes
    one that trains the clients on remote nodes).
    """
    round_fn = round_fn or run_round
    if problem.n_clients != config.n_clients:
        raise ValueError(f"budgets must have one entry per client ({problem.n_clients}), got {config.n_clients}")
    identity = dict(problem_identity(problem), **(identity or {}))
    resuming = resume and checkpoint is not None and os.path.exists(checkpoint)
    if resuming:
        state, history, start = load_checkpoint(checkpoint, algorithm.name, config, identity=identity,
                                                layer_shapes=problem.layer_shapes)
        check_resumed_state(checkpoint, algorithm, state, history, problem, config)
        history.config = config.to_json()
    else:
        state = algorithm.init(problem, config)
        history = History(algorithm.name, config.to_json(), peak_client_memory=[0] * config.n_clients)
        with np.errstate(over="ignore", invalid="ignore"):
            row = evaluate(algorithm, state, problem, config)
        if diverged(row, 1.0, None):  # only non-finite values count here
            raise DivergenceError(f"{algorithm.name}: the loss at the initial model is not finite ({row}); "
                                  f"the problem's data or weights overflow")
        history.append(dict(row, upload_floats=0, download_floats=0, broadcast_floats=0, client_memory_floats=0))
        start = 0
    initial_loss = history["loss"][0]
    last = config.rounds if stop_after is None else min(config.rounds, stop_after)
    for t in range(start, last):
        try:
            state, plans, uploads = round_fn(algorithm, state, problem, config, t)
        except DivergenceError as exc:
            raise DivergenceError(f"{algorithm.name}: {exc}") from None
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            if not (resuming and t == start):
                raise
            raise ValueError(f"checkpoint {checkpoint}: its server state does not fit this run "
                             f"({type(exc).__name__}: {exc})") from None
        with np.errstate(over="ignore", invalid="ignore"):
            row = evaluate(algorithm, state, problem, config)
        if diverged(row, initial_loss, divergence_factor):
            raise_divergence(algorithm, problem, config, t, row, initial_loss, plans, uploads, divergence_factor)
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
        if checkpoint is not None:
            save_checkpoint(checkpoint, algorithm.name, config, state, history, t + 1, identity=identity)
        if on_round is not None:
            on_round(t, row)
    history.final_state = state
    return history


def check_resumed_state(path, algorithm, state, history, problem, config) -> None:
    """The loaded server state must reproduce the loss its history recorded last (to 1e-9):
    a file whose state and history disagree, or whose state does not fit the problem, is refused."""
    try:
        with np.errstate(all="ignore"):
            loss = evaluate(algorithm, state, problem, config)["loss"]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise ValueError(f"checkpoint {path}: its server state does not fit this problem "
                         f"({type(exc).__name__}: {exc})") from None
    saved = history["loss"][-1]
    if not (np.isfinite(loss) and np.isclose(loss, saved, rtol=1e-9, atol=0.0)):
        raise ValueError(f"checkpoint {path}: its server state gives loss {loss:.17g} but its history records "
                         f"{saved!r}; the file is inconsistent, refusing to resume")
