"""The round loop: history, accounting, checkpoint/resume and divergence detection.

    history = run(get_algorithm("fslora"), problem, config)

Row t of the history describes the server state after t rounds (row 0: the initial state).
All randomness is keyed by (round, client, layer), so a run resumed from a checkpoint is
bit-identical to an uninterrupted one.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field

import numpy as np

from .client import DivergenceError
from .config import FedConfig
from .outputs import atomic_write_bytes  # noqa: F401  (re-exported: older imports use it from here)
from .problems.sketched import MAX_ENUMERATION, sketched_loss

CHECKPOINT_VERSION = 1
HISTORY_KEYS = ("loss", "sketched_loss", "grad_norm_factors", "grad_norm_weights", "upload_floats",
                "download_floats", "broadcast_floats", "client_memory_floats")


@dataclass
class History:
    """Per-round records of one run; lists indexed by round (0 = before training)."""

    algorithm: str
    config: dict
    rows: dict = field(default_factory=lambda: {k: [] for k in HISTORY_KEYS})
    per_client_upload: list = field(default_factory=list)   # [round][client] floats this round
    peak_client_memory: list = field(default_factory=list)  # per client, max over rounds (floats)
    final_state: object = None                              # the ServerState after the last round

    def append(self, row: dict):
        for k in HISTORY_KEYS:
            self.rows[k].append(row.get(k))

    def __getitem__(self, key):
        return self.rows[key]

    @property
    def n_rounds(self) -> int:
        return len(self.rows["loss"]) - 1

    def to_json(self) -> dict:
        out = {k: [None if v is None else (int(v) if isinstance(v, (int, np.integer)) else float(v)) for v in vals]
               for k, vals in self.rows.items()}
        out["per_client_upload"] = self.per_client_upload
        out["peak_client_memory"] = self.peak_client_memory
        return out


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


def global_sketched_loss(problem, layers, config: FedConfig) -> float | None:
    """f^S = (1/N) sum_i f_i^S at the server's factors, when it can be computed exactly."""
    try:
        return float(np.mean([sketched_loss(problem, i, layers, config.lora_scaling,
                                            [config.budgets[i]] * problem.n_layers)
                              for i in range(problem.n_clients)]))
    except ValueError:  # enumeration too large for this family: no exact value
        return None


def evaluate(algorithm, state, problem, config) -> dict:
    weights = algorithm.global_weights(state, problem, config)
    loss = problem.global_loss(weights)
    layers = algorithm.global_factors(state)
    row = {"loss": loss,
           "grad_norm_weights": float(np.sqrt(sum(np.sum(g * g) for g in problem.global_weight_grads(weights))))}
    if layers is not None and algorithm.name in ("fslora", "fedit", "hetlora"):
        row["grad_norm_factors"] = factor_grad_norm(problem, layers, config.lora_scaling)
    if algorithm.name == "fslora":
        row["sketched_loss"] = global_sketched_loss(problem, layers, config)
    return row


def raise_divergence(algorithm, state, problem, config, round_index):
    """Name the first client whose loss is non-finite at the aggregated model."""
    weights = algorithm.global_weights(state, problem, config)
    with np.errstate(over="ignore", invalid="ignore"):
        losses = [problem.loss(i, weights) for i in range(problem.n_clients)]
    bad = next((i for i, v in enumerate(losses) if not np.isfinite(v)), None)
    if bad is None:  # every f_i is finite but their mean overflowed: name the largest
        bad = int(np.argmax(losses))
    raise DivergenceError(f"round {round_index}, client {bad}: non-finite global loss at the aggregated model "
                          f"(f_i = {losses[bad]}); lower the step size")


def run_round(algorithm, state, problem, config: FedConfig, round_index: int):
    """One round: configure, train every participant, aggregate. Returns (state, plans, uploads)."""
    plans = algorithm.configure_round(state, problem, config, round_index, config.participants(round_index))
    uploads = [algorithm.client_update(plan, problem, config, round_index) for plan in plans]
    new_state = algorithm.aggregate(state, plans, uploads, config)
    check_finite_state(new_state, round_index, plans)
    return new_state, plans, uploads


def check_finite_state(state, round_index: int, plans) -> None:
    """DivergenceError naming the layer if the aggregated server factors are not all finite."""
    for l, pair in enumerate(state.layers):
        if not all(np.all(np.isfinite(x)) for x in pair):
            raise DivergenceError(f"round {round_index}: server factors of layer {l} became non-finite after "
                                  f"aggregation (clients {[p.client for p in plans]}); lower the step size")


def run(algorithm, problem, config: FedConfig, *, checkpoint: str | os.PathLike | None = None,
        resume: bool = False, on_round=None, stop_after: int | None = None, round_fn=None) -> History:
    """Run ``config.rounds`` rounds of ``algorithm`` on ``problem``.

    checkpoint: path rewritten atomically after every round; with ``resume=True`` an existing
    checkpoint is continued (its config and algorithm must match). on_round(t, row) is called
    after each round. stop_after: stop after that many rounds in total (simulates an
    interruption; the checkpoint then resumes it). round_fn: how one round is executed, with
    :func:`run_round`'s signature and result (default: in this process; the Flower app passes
    one that trains the clients on remote nodes).
    """
    round_fn = round_fn or run_round
    if problem.n_clients != config.n_clients:
        raise ValueError(f"budgets must have one entry per client ({problem.n_clients}), got {config.n_clients}")
    if resume and checkpoint is not None and os.path.exists(checkpoint):
        state, history, start = load_checkpoint(checkpoint, algorithm.name, config)
    else:
        state = algorithm.init(problem, config)
        history = History(algorithm.name, config.to_json(), peak_client_memory=[0] * config.n_clients)
        history.append(dict(evaluate(algorithm, state, problem, config), upload_floats=0, download_floats=0,
                            broadcast_floats=0, client_memory_floats=0))
        start = 0
    last = config.rounds if stop_after is None else min(config.rounds, stop_after)
    for t in range(start, last):
        state, plans, uploads = round_fn(algorithm, state, problem, config, t)
        with np.errstate(over="ignore", invalid="ignore"):
            row = evaluate(algorithm, state, problem, config)
        if not np.isfinite(row["loss"]):
            raise_divergence(algorithm, state, problem, config, t)
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
            save_checkpoint(checkpoint, algorithm.name, config, state, history, t + 1)
        if on_round is not None:
            on_round(t, row)
    history.final_state = state
    return history


def save_checkpoint(path, algorithm_name, config, state, history, next_round):
    payload = {"version": CHECKPOINT_VERSION, "algorithm": algorithm_name, "config": config.to_json(),
               "state": state, "history": history, "next_round": next_round}
    atomic_write_bytes(path, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))


def load_checkpoint(path, algorithm_name, config):
    """(state, history, next_round) from a checkpoint written by :func:`run` (a trusted file)."""
    with open(path, "rb") as fh:
        try:
            payload = pickle.load(fh)
        except Exception as exc:
            raise ValueError(f"checkpoint {path} is unreadable: {exc}") from None
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint {path} has version {payload.get('version')}, expected {CHECKPOINT_VERSION}")
    if payload["algorithm"] != algorithm_name:
        raise ValueError(f"checkpoint {path} is for algorithm {payload['algorithm']!r}, not {algorithm_name!r}")
    saved = dict(payload["config"], rounds=config.rounds)
    if saved != dict(config.to_json(), rounds=config.rounds):
        raise ValueError(f"checkpoint {path} was written with a different config; refusing to resume")
    return payload["state"], payload["history"], payload["next_round"]
