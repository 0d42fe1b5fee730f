"""One federated run per (family, seed, arm), through the reference's own round.

An *arm* is one algorithm at one global rank with one budget rule; a *run* executes it with
``fslora_ref.federation.run_round`` (no algorithm code here) and records, every
``eval_every`` rounds and at the last one, the global training loss f(X^t), the held-out
loss (the same clients' held-out samples, ``problem.held_out``) and the cumulative uploaded
floats. Every arm of a seed sees the same problem instance (``make_problem(seed=seed)``), the
same initialisation, minibatch and sketch streams: that is what makes the comparisons paired.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from fslora_ref.algorithms import ALGORITHMS
from fslora_ref.client import DivergenceError
from fslora_ref.config import FedConfig, budgets_from_ratios, draw_budgets
from fslora_ref.federation import run_round
from fslora_ref.problems import make_problem

# What the (treatment, reference) comparisons are decided on; the first is the primary metric.
METRIC_NAMES = ("heldout", "train")


@dataclass(frozen=True)
class Arm:
    """algorithm at global rank ``rank``; budgets from ``budget`` = ("ratios", (k/r, ...)) cycled
    over clients, ("fixed", k) for every client, or ("distribution", name, k_min, k_max) drawn
    per seed with ``fslora_ref.config.draw_budgets``."""

    label: str
    algorithm: str
    rank: int
    budget: tuple

    @property
    def key(self) -> str:
        """What the run depends on (not the label): equal keys in two claims share one run."""
        return f"{self.algorithm}|r={self.rank}|" + ",".join(str(x) for x in self.budget)

    def budgets(self, n_clients: int, seed: int) -> list:
        kind = self.budget[0]
        if kind == "ratios":
            return budgets_from_ratios(self.rank, self.budget[1], n_clients)
        if kind == "fixed":
            return [int(self.budget[1])] * n_clients
        if kind == "distribution":
            _, name, low, high = self.budget
            return draw_budgets(n_clients, low, high, name, seed)
        raise ValueError(f"arm {self.label}: unknown budget rule {self.budget!r}")

    def describe(self) -> str:
        kind = self.budget[0]
        if kind == "ratios":
            rule = "k_i/r cycled over " + "{" + ", ".join(f"{x:g}" for x in self.budget[1]) + "}"
        elif kind == "fixed":
            rule = f"k_i = {self.budget[1]} for every client"
        else:
            rule = f"k_i ~ {self.budget[1]} on [{self.budget[2]}, {self.budget[3]}]"
        budgets = "" if self.algorithm != "fedit" else " (FedIT trains the full rank r on every client)"
        return f"{self.algorithm}, r = {self.rank}, {rule}{budgets}"


@dataclass(frozen=True)
class Settings:
    """Everything about a family's runs except the arm: problem size, N, T, H, batch, step size."""

    family: str
    clients: int
    rounds: int
    local_steps: int
    batch_size: int
    lr: float
    dims: tuple            # ((name, value), ...) passed to the family
    eval_size: int         # held-out samples per client
    eval_every: int

    def problem(self, seed: int):
        return make_problem(self.family, n_clients=self.clients, seed=seed, batch_size=self.batch_size,
                            eval_size=self.eval_size, **dict(self.dims))

    def config(self, arm: Arm, seed: int) -> FedConfig:
        return FedConfig(rank=arm.rank, budgets=arm.budgets(self.clients, seed), local_steps=self.local_steps,
                         lr=self.lr, rounds=self.rounds, seed=seed)

    def eval_rounds(self) -> list:
        """Rounds after which the model is evaluated (0 = before training; always the last)."""
        return sorted(set(range(0, self.rounds + 1, self.eval_every)) | {self.rounds})

    def to_json(self) -> dict:
        d = asdict(self)
        d["dims"] = dict(self.dims)
        return d


@dataclass
class RunResult:
    """Curves of one run: ``metrics[name][j]`` after ``rounds[j]`` rounds (None where a metric was
    not evaluated); ``diverged_at`` is the round that produced non-finite numbers (or None)."""

    arm: str               # Arm.key
    seed: int
    budgets: list
    rounds: list = field(default_factory=list)
    upload_floats: list = field(default_factory=list)
    metrics: dict = field(default_factory=lambda: {name: [] for name in METRIC_NAMES})
    diverged_at: int | None = None

    def record(self, round_index: int, upload_floats: int, **values):
        self.rounds.append(int(round_index))
        self.upload_floats.append(int(upload_floats))
        for name, series in self.metrics.items():
            v = values.get(name)
            series.append(None if v is None else float(v))

    def final(self, metric: str):
        """The metric after the last round (None if the run diverged)."""
        return None if self.diverged_at is not None else self.metrics[metric][-1]

    def at_upload(self, metric: str, budget: float):
        """(value, round) at the last evaluation whose cumulative upload is <= ``budget``."""
        if self.diverged_at is not None:
            return None, None
        j = max(i for i, (u, v) in enumerate(zip(self.upload_floats, self.metrics[metric])) if u <= budget and v is not None)
        return self.metrics[metric][j], self.rounds[j]

    def to_json(self) -> dict:
        return asdict(self)


def _evaluate(algorithm, state, problem, config):
    weights = algorithm.global_weights(state, problem, config)
    with np.errstate(over="ignore", invalid="ignore"):
        return problem.global_loss(weights), problem.held_out.global_loss(weights)


def run_arm(arm: Arm, settings: Settings, seed: int, problem=None, algorithms=None) -> RunResult:
    """T rounds of ``arm`` on the seed's problem. algorithms: name -> Algorithm class (default:
    the reference's ALGORITHMS; tests pass a broken FSLoRA here)."""
    problem = problem if problem is not None else settings.problem(seed)
    algorithm = (algorithms or ALGORITHMS)[arm.algorithm]()
    config = settings.config(arm, seed)
    result = RunResult(arm.key, seed, list(config.budgets))
    checkpoints = set(settings.eval_rounds())
    state, uploaded = algorithm.init(problem, config), 0
    for t in range(config.rounds + 1):
        if t > 0:
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    state, _, uploads = run_round(algorithm, state, problem, config, t - 1)
            except DivergenceError:
                result.diverged_at = t - 1
                return result
            uploaded += sum(up.upload_floats for up in uploads)
        if t in checkpoints:
            train, heldout = _evaluate(algorithm, state, problem, config)
            if not (np.isfinite(train) and np.isfinite(heldout)):
                result.diverged_at = t - 1
                return result
            result.record(t, uploaded, heldout=heldout, train=train)
    return result


def run_unit(settings: Settings, seed: int, arms, algorithms=None, on_arm=None) -> dict:
    """Every arm of one (family, seed) on one shared problem instance: {arm.key: RunResult as JSON}."""
    problem = settings.problem(seed)
    out = {}
    for arm in arms:
        out[arm.key] = run_arm(arm, settings, seed, problem, algorithms).to_json()
        if on_arm is not None:
            on_arm(arm)
    return out
