"""One federated run per (family, seed, arm), through the reference's own round.

An *arm* is one algorithm at one global rank with one budget rule; a *run* executes it with
``fslora_ref.federation.run_round`` (no algorithm code here) and records, every
``eval_every`` rounds and at the last one, the global training loss f(X^t), the held-out
loss (the same clients' held-out samples, ``problem.held_out``) and the cumulative uploaded
floats. Every arm of a seed sees the same problem instance (``make_problem(seed=seed)``), the
same initialisation, minibatch and sketch streams: that is what makes the comparisons paired.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from fslora_ref.algorithms import ALGORITHMS
from fslora_ref.client import DivergenceError
from fslora_ref.config import FedConfig, budgets_from_ratios, draw_budgets
from fslora_ref.federation import run_round
from fslora_ref.problems import make_problem

# What the (treatment, reference) comparisons are decided on; the first is the primary metric.
METRIC_NAMES = ("heldout", "train")

# A run has diverged when a recorded loss is non-finite or exceeds this multiple of its round-0 value
# (checked at every evaluation): a model 10x worse than where it started is no data point, and a
# finite 1e117 must never enter a mean (fslora_ref.divergence's 1e4 is a guard for long runs, not a
# verdict on a comparison).
DIVERGENCE_MULTIPLE = 10.0
# Numerical failures that end one run, never the command: a non-finite local step
# (DivergenceError), an SVD or solve that did not converge (FlexLoRA's re-split) and floating-point
# errors raised under np.errstate(raise=...) by an implementation under test.
NUMERICAL_FAILURES = (DivergenceError, np.linalg.LinAlgError, FloatingPointError, OverflowError)


@dataclass(frozen=True)
class Arm:
    """One algorithm at one global rank with one budget rule.

    Parameters
    ----------
    label : str
        The arm's name in its claim.
    algorithm : str
        A key of ``fslora_ref.algorithms.ALGORITHMS``.
    rank : int
        The global rank r.
    budget : tuple
        ``("ratios", (k/r, ...))`` cycled over clients, ``("fixed", k)`` for every client, or
        ``("distribution", name, k_min, k_max)`` drawn per seed with
        ``fslora_ref.config.draw_budgets``.
    """

    label: str
    algorithm: str
    rank: int
    budget: tuple

    @property
    def key(self) -> str:
        """What the run depends on (not the label): equal keys in two claims share one run."""
        return f"{self.algorithm}|r={self.rank}|" + ",".join(str(x) for x in self.budget)

    def budgets(self, n_clients: int, seed: int) -> list:
        """The clients' budgets k_i under the arm's rule.

        Parameters
        ----------
        n_clients : int
            The number of clients N.
        seed : int
            The run seed (a drawn distribution depends on it).

        Returns
        -------
        list of int
            k_i per client.

        Raises
        ------
        ValueError
            If the budget rule is unknown.

        Examples
        --------
        >>> from theory.empirical.runs import Arm
        >>> Arm("half", "fslora", 8, ("ratios", (0.5, 1.0))).budgets(4, seed=0)
        [4, 8, 4, 8]
        """
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
        """The arm in words, for the report.

        Returns
        -------
        str
        """
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
    """Everything about a family's runs except the arm: problem size, N, T, H, batch, step size.

    Parameters
    ----------
    family : str
        The problem family.
    clients : int
        The number of clients N.
    rounds : int
        The number of rounds T.
    local_steps : int
        The number of local steps H.
    batch_size : int
        The clients' minibatch size.
    lr : float
        The client step size.
    dims : tuple
        ``((name, value), ...)`` passed to the family.
    eval_size : int
        Held-out samples per client.
    eval_every : int
        Rounds between evaluations.
    """

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
        """The seed's problem instance (every arm of a seed shares it).

        Parameters
        ----------
        seed : int
            The run seed.

        Returns
        -------
        fslora_ref.problems.Problem
        """
        return make_problem(self.family, n_clients=self.clients, seed=seed, batch_size=self.batch_size,
                            eval_size=self.eval_size, **dict(self.dims))

    def with_lr(self, lr: float) -> "Settings":
        """The same settings at client step size ``lr`` (each arm runs at its own tuned step).

        Parameters
        ----------
        lr : float
            The client step size.

        Returns
        -------
        Settings
        """
        return replace(self, lr=float(lr))

    def config(self, arm: Arm, seed: int) -> FedConfig:
        """The run configuration of ``arm`` on ``seed``.

        Parameters
        ----------
        arm : Arm
            The arm (rank and budgets).
        seed : int
            The run seed.

        Returns
        -------
        fslora_ref.config.FedConfig
        """
        return FedConfig(rank=arm.rank, budgets=arm.budgets(self.clients, seed), local_steps=self.local_steps,
                         lr=self.lr, rounds=self.rounds, seed=seed)

    def eval_rounds(self) -> list:
        """The rounds after which the model is evaluated (0 = before training; always the last).

        Returns
        -------
        list of int
        """
        return sorted(set(range(0, self.rounds + 1, self.eval_every)) | {self.rounds})

    def to_json(self) -> dict:
        """The settings as a JSON-ready dict (``dims`` as a dict).

        Returns
        -------
        dict
        """
        d = asdict(self)
        d["dims"] = dict(self.dims)
        return d


@dataclass
class RunResult:
    """The curves of one run.

    Parameters
    ----------
    arm : str
        The arm's key.
    seed : int
        The run seed.
    budgets : list of int
        k_i per client.
    rounds : list of int, optional
        The rounds evaluated.
    upload_floats : list of int, optional
        The cumulative uploaded floats at each evaluated round.
    metrics : dict, optional
        ``{name: [value after rounds[j]]}`` (None where a metric was not evaluated).
    diverged_at : int or None, optional
        The round in which the run diverged or failed numerically.
    diverged_reason : str or None, optional
        How it diverged.
    lr : float or None, optional
        The client step the run used.
    """

    arm: str               # Arm.key
    seed: int
    budgets: list
    rounds: list = field(default_factory=list)
    upload_floats: list = field(default_factory=list)
    metrics: dict = field(default_factory=lambda: {name: [] for name in METRIC_NAMES})
    diverged_at: int | None = None
    diverged_reason: str | None = None
    lr: float | None = None

    def diverge(self, round_index: int, reason: str) -> "RunResult":
        """Mark the run diverged.

        Parameters
        ----------
        round_index : int
            The round in which it diverged.
        reason : str
            How.

        Returns
        -------
        RunResult
            ``self``.
        """
        self.diverged_at, self.diverged_reason = int(round_index), reason
        return self

    def record(self, round_index: int, upload_floats: int, **values):
        """Record one evaluation.

        Parameters
        ----------
        round_index : int
            The rounds completed.
        upload_floats : int
            The cumulative uploaded floats.
        **values
            The metrics by name (``heldout``, ``train``); a missing one is recorded as None.
        """
        self.rounds.append(int(round_index))
        self.upload_floats.append(int(upload_floats))
        for name, series in self.metrics.items():
            v = values.get(name)
            series.append(None if v is None else float(v))

    def final(self, metric: str):
        """The metric after the last round.

        Parameters
        ----------
        metric : str
            The metric's name.

        Returns
        -------
        float or None
            None if the run diverged.
        """
        return None if self.diverged_at is not None else self.metrics[metric][-1]

    def at_upload(self, metric: str, budget: float):
        """The metric at the last evaluation whose cumulative upload is <= ``budget``.

        Parameters
        ----------
        metric : str
            The metric's name.
        budget : float
            The upload budget in floats.

        Returns
        -------
        value : float or None
        round : int or None
            Both None if the run diverged.
        """
        if self.diverged_at is not None:
            return None, None
        j = max(i for i, (u, v) in enumerate(zip(self.upload_floats, self.metrics[metric])) if u <= budget and v is not None)
        return self.metrics[metric][j], self.rounds[j]

    def to_json(self) -> dict:
        """The run as a JSON-ready dict (its fields).

        Returns
        -------
        dict
        """
        return asdict(self)


def _evaluate(algorithm, state, problem, config):
    weights = algorithm.global_weights(state, problem, config)
    with np.errstate(over="ignore", invalid="ignore"):
        return problem.global_loss(weights), problem.held_out.global_loss(weights)


def run_arm(arm: Arm, settings: Settings, seed: int, problem=None, algorithms=None) -> RunResult:
    """T rounds of ``arm`` on the seed's problem at ``settings.lr``.

    Never raises on a numerical failure: divergence (a non-finite loss, or a training or held-out loss
    above ``DIVERGENCE_MULTIPLE`` x its round-0 value at an evaluation) and the failures in
    ``NUMERICAL_FAILURES`` end the run with ``diverged_at`` (the round) and ``diverged_reason``.

    Parameters
    ----------
    arm : Arm
        The arm.
    settings : Settings
        The runs' settings.
    seed : int
        The run seed.
    problem : fslora_ref.problems.Problem, optional
        The seed's problem, if already built.
    algorithms : dict or None, optional
        ``{name: Algorithm class or factory}`` (default: the reference's ``ALGORITHMS``; tests pass a
        broken FSLoRA here).

    Returns
    -------
    RunResult
    """
    problem = problem if problem is not None else settings.problem(seed)
    algorithm = (algorithms or ALGORITHMS)[arm.algorithm]()
    config = settings.config(arm, seed)
    result = RunResult(arm.key, seed, list(config.budgets), lr=float(settings.lr))
    checkpoints = set(settings.eval_rounds())
    state, uploaded, initial = algorithm.init(problem, config), 0, None
    for t in range(config.rounds + 1):
        if t > 0:
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    state, _, uploads = run_round(algorithm, state, problem, config, t - 1)
            except NUMERICAL_FAILURES as exc:
                return result.diverge(t - 1, f"{type(exc).__name__} in round {t - 1}: {str(exc)[:300]}")
            uploaded += sum(up.upload_floats for up in uploads)
        if t in checkpoints:
            try:
                train, heldout = _evaluate(algorithm, state, problem, config)
            except NUMERICAL_FAILURES as exc:
                return result.diverge(t - 1, f"{type(exc).__name__} evaluating after round {t}: {str(exc)[:300]}")
            reason = _divergence(train, heldout, initial)
            if reason is not None:
                return result.diverge(max(t - 1, 0), f"after round {t}: {reason}")
            initial = initial or (train, heldout)
            result.record(t, uploaded, heldout=heldout, train=train)
    return result


def _divergence(train: float, heldout: float, initial) -> str | None:
    """Why these losses mean the run diverged (None: they do not)."""
    if not (np.isfinite(train) and np.isfinite(heldout)):
        return f"non-finite loss (train {train}, held-out {heldout})"
    if initial is None:
        return None
    for name, value, start in (("training", train, initial[0]), ("held-out", heldout, initial[1])):
        if start > 0 and value > DIVERGENCE_MULTIPLE * start:
            return (f"{name} loss {value:.4g} exceeds {DIVERGENCE_MULTIPLE:g}x its round-0 value {start:.4g}")
    return None


def run_unit(settings: Settings, seed: int, arms, algorithms=None, on_arm=None, lrs=None) -> dict:
    """Every arm of one (family, seed) on one shared problem instance.

    Parameters
    ----------
    settings : Settings
        The family's settings.
    seed : int
        The run seed.
    arms : iterable of Arm
        The arms.
    algorithms : dict or None, optional
        ``{name: Algorithm class or factory}`` (default: the reference's ``ALGORITHMS``; tests pass a
        broken FSLoRA here).
    on_arm : callable, optional
        Called with each arm after its run (progress).
    lrs : dict, optional
        ``{arm key: client step}`` (each arm's tuned step; default ``settings.lr``).

    Returns
    -------
    dict
        ``{arm key: RunResult as JSON}``.
    """
    problem = settings.problem(seed)
    out = {}
    for arm in arms:
        lr = (lrs or {}).get(arm.key, settings.lr)
        out[arm.key] = run_arm(arm, settings.with_lr(lr), seed, problem, algorithms).to_json()
        if on_arm is not None:
            on_arm(arm)
    return out
