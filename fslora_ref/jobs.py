"""Typed jobs: a run described by a frozen dataclass instead of a command line.

A job is the one way to describe a run, whoever starts it: Python (``SimulateJob(clients=8)``),
``fslora simulate`` (its options are the job's fields, ``--local-steps`` <-> ``local_steps``),
a TOML / JSON file (``fslora simulate --config job.toml``) or a Flower run config. Each job

* ``from_dict(d)``: builds it from plain values (keys with ``-`` or ``_``; a key the job does not
  have is an error naming it; a key left out takes the field's default),
* ``to_dict()``: the plain-JSON form (``from_dict(job.to_dict()) == job``),
* ``validate()``: one-line ``ValueError`` / ``TypeError`` naming the option and its allowed range.

Where it writes (``out``) and whether it continues an earlier run (``resume``) are not part of
the job: the same job may run into any directory: ``fslora_ref.simulate.run_simulate(job, out, resume=...)``
starts a simulate job. What a checkpoint must match to be resumed comes from the job (see
:func:`fslora_ref.simulate.run_identity`).
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import ClassVar

from .algorithms import ALGORITHMS, get_algorithm
from .config import BUDGET_DISTRIBUTIONS, budgets_from_ratios, draw_budgets
from .problems import FAMILIES
from .validation import (MAX_CLIENTS, MAX_DIM, MAX_LOCAL_STEPS, MAX_RANK, MAX_ROUNDS, check_fraction, check_int,
                         check_positive_float)


def option_name(field_name: str) -> str:
    """The command-line spelling of a job field; error messages use it.

    Parameters
    ----------
    field_name : str
        A job field, e.g. ``"local_steps"``.

    Returns
    -------
    str
        Its option, e.g. ``"--local-steps"``.
    """
    return "--" + field_name.replace("_", "-")


def check_choice(field_name: str, value, choices) -> None:
    """One-line error unless ``value`` is one of ``choices``.

    Parameters
    ----------
    field_name : str
        The job field (named as its option in the message).
    value : object
        The value given.
    choices : iterable
        The allowed values.

    Raises
    ------
    ValueError
        If ``value`` is not in ``choices``.
    """
    if value not in choices:
        raise ValueError(f"{option_name(field_name)} must be one of {list(choices)}, got {value!r}")


def read_job_file(path) -> dict:
    """The table in a TOML (``.toml``) or JSON file describing a job, as a dict (data only).

    Parameters
    ----------
    path : str
        ``*.toml`` (read with tomllib) or ``*.json``.

    Returns
    -------
    dict
        The file's top-level table; one-line errors for a missing, unreadable or malformed file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--config {path!r} does not exist")
    try:
        if path.endswith(".toml"):
            import tomllib
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        elif path.endswith(".json"):
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        else:
            raise ValueError("the file name must end in .toml or .json")
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        raise ValueError(f"--config {path!r} is not a readable job file: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise ValueError(f"--config {path!r} must hold a table of job fields, got a {type(data).__name__}")
    return data


class Job:
    """What every job dataclass shares: ``from_dict`` / ``to_dict`` / ``from_file`` / ``replace``.

    Subclasses are frozen dataclasses; ``LIST_FIELDS`` names the fields held as tuples (given
    as lists in files and dicts), ``NAME`` the command the job belongs to (error messages).
    """

    NAME: ClassVar[str] = "job"
    LIST_FIELDS: ClassVar[tuple] = ()

    @classmethod
    def field_names(cls) -> tuple:
        """The job's field names, in declaration order.

        Returns
        -------
        tuple of str
        """
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, data, *, where: str | None = None):
        """The job with the fields in ``data``, every field left out at its default.

        Values are not range-checked here: call ``validate()``.

        Parameters
        ----------
        data : dict
            Field values by name (keys may use ``-`` or ``_``; lists for the list fields).
        where : str, optional
            What ``data`` came from, for error messages (default: "<NAME> job").

        Returns
        -------
        Job
            An instance of the class it is called on.

        Raises
        ------
        ValueError
            A key that is not a field of the job, named in one line.
        """
        if not isinstance(data, dict):
            raise ValueError(f"{where or cls.NAME + ' job'} must be a table of fields, got {type(data).__name__}")
        values = {str(k).replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise ValueError(f"{where or cls.NAME + ' job'} has fields `fslora {cls.NAME}` does not know: {unknown}")
        for name in cls.LIST_FIELDS:
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        for f in dataclasses.fields(cls):   # 32 in a file is the float 32.0 a float field holds
            value = values.get(f.name)
            if str(f.type).startswith("float") and isinstance(value, int) and not isinstance(value, bool):
                values[f.name] = float(value)
        return cls(**values)

    @classmethod
    def from_file(cls, path):
        """The job in a TOML / JSON file (see :func:`read_job_file`), validated.

        Parameters
        ----------
        path : str or os.PathLike
            A ``.toml`` or ``.json`` file holding a table of the job's fields.

        Returns
        -------
        Job
            An instance of the class it is called on.
        """
        job = cls.from_dict(read_job_file(path), where=f"--config {os.fspath(path)!r}")
        job.validate()
        return job

    def to_dict(self) -> dict:
        """Every field in declaration order, as plain JSON values (tuples become lists).

        Returns
        -------
        dict
            ``type(job).from_dict(job.to_dict()) == job``.
        """
        return {f: (list(v) if isinstance(v, tuple) else v) for f, v in dataclasses.asdict(self).items()}

    def replace(self, **changes):
        """A copy with some fields changed (not validated: call ``validate()``).

        Parameters
        ----------
        **changes
            New field values by name.

        Returns
        -------
        Job
        """
        return dataclasses.replace(self, **changes)

    def validate(self) -> None:  # pragma: no cover - every job overrides it
        """Check every field; one-line ValueError / TypeError naming the option (subclasses)."""
        raise NotImplementedError


def _numbers(text, kind, option):
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{option} must be comma-separated {'integers' if kind is int else 'numbers'}, "
                         f"got {text!r}") from None


def _csv(value) -> str | None:
    """A comma-separated list as ``fslora simulate`` takes it: a string stays, a list is joined."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return value


def parse_variants(value) -> dict:
    """The baselines' variant options as a table ``{algorithm: {option: value}}``.

    A Flower run config holds only flat values, so there the table travels as a string
    ``ALGORITHM.OPTION=VALUE,...``; this reads it back. Names and values are not checked here
    (the algorithm registry does that).

    Parameters
    ----------
    value : str, dict or None
        ``"hetlora.aggregate=matrix,flexlora.split=balanced"``-style text; a dict (returned as is);
        None or ``""`` (no variants).

    Returns
    -------
    dict
        ``{algorithm: {option: value}}``, values as strings when read from text.

    Raises
    ------
    ValueError
        If an item of the text is not ``ALGORITHM.OPTION=VALUE``.

    Examples
    --------
    >>> from fslora_ref.jobs import parse_variants
    >>> parse_variants("hetlora.aggregate=matrix, flexlora.split=balanced")
    {'hetlora': {'aggregate': 'matrix'}, 'flexlora': {'split': 'balanced'}}
    >>> parse_variants(None)
    {}
    """
    if value is None or value == "":
        return {}
    if not isinstance(value, str):
        return value
    table = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, choice = item.partition("=")
        algorithm, dot, option = key.strip().partition(".")
        if not (sep and dot and algorithm and option and choice.strip()):
            raise ValueError(f"variants must be ALGORITHM.OPTION=VALUE,... (e.g. hetlora.aggregate=matrix), got {value!r}")
        table.setdefault(algorithm, {})[option.strip()] = choice.strip()
    return table


@dataclass(frozen=True)
class SimulateJob(Job):
    """``fslora simulate``: FSLoRA and the baselines on one synthetic federated problem.

    The comma-separated lists (``ratios``, ``budgets``, ``algorithms``) are held as the command
    line writes them ("0.125,0.25"); ``from_dict`` also takes lists. The client budgets k_i come
    from ``budgets`` if given, else ``budget_distribution`` if given, else ``ratios``
    (:meth:`client_budgets`).

    Parameters
    ----------
    family : str, default "least_squares"
        The problem family (one of ``fslora_ref.problems.FAMILIES``).
    clients : int, default 20
        The number of clients N.
    rank : int, default 16
        The global rank r.
    ratios : str or None, default "0.125,0.25,0.5,0.75"
        Budget ratios k_i / r in (0, 1], cycled over the clients.
    budgets : str or None
        One budget k_i per client, e.g. "2,4,8".
    budget_distribution : {"uniform", "normal", "heavy_tail_low"} or None
        Draw the budgets (see :func:`fslora_ref.config.draw_budgets`).
    r_min, r_max : int or None
        The range of drawn budgets (default 1 and ``rank``); only with ``budget_distribution``.
    local_steps : int, default 5
        Local steps H per round.
    lr : float, default 0.01
        The client step size.
    rounds : int, default 100
        The number of rounds T.
    batch_size : int, default 16
        Minibatch size of the local steps (0: full batch).
    m, n : int, default 48, 32
        The weight's shape (m, n).
    algorithms : str, default every algorithm
        Comma-separated algorithm names to run.
    client_optimizer : {"sgd", "adamw"}, default "sgd"
        The client optimiser.
    client_fraction : float, default 1.0
        The fraction of clients taking part in each round.
    server_optimizer : {"none", "sgd", "adam"}, default "none"
        The server step on the averaged update.
    server_lr : float or None
        The server step size (default 1.0); only with a server optimiser.
    seed : int, default 0
        The run's seed.
    variants : dict, optional
        ``{algorithm: {option: value}}``: each baseline's variant (docs/spec.md section 5); an
        algorithm or option left out takes its default, the FSLoRA paper's rule.

    Examples
    --------
    >>> from fslora_ref.jobs import SimulateJob
    >>> job = SimulateJob(clients=4, rank=8, rounds=2, algorithms="fslora,fedit")
    >>> job.validate()
    >>> job.algorithm_names(), job.client_budgets()
    (['fslora', 'fedit'], [1, 2, 4, 6])
    >>> SimulateJob.from_dict(job.to_dict()) == job
    True
    """

    NAME: ClassVar[str] = "simulate"

    family: str = "least_squares"
    clients: int = 20
    rank: int = 16
    ratios: str | None = "0.125,0.25,0.5,0.75"
    budgets: str | None = None
    budget_distribution: str | None = None
    r_min: int | None = None
    r_max: int | None = None
    local_steps: int = 5
    lr: float = 0.01
    rounds: int = 100
    batch_size: int = 16
    m: int = 48
    n: int = 32
    algorithms: str = ",".join(ALGORITHMS)
    client_optimizer: str = "sgd"
    client_fraction: float = 1.0
    server_optimizer: str = "none"
    server_lr: float | None = None
    seed: int = 0
    # {algorithm: {option: value}}: each baseline's variant (docs/spec.md section 5); an algorithm or
    # option left out takes its default, the rule the FSLoRA paper's experiments used
    variants: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data, *, where: str | None = None) -> "SimulateJob":
        """The job with the fields in ``data`` (see :meth:`Job.from_dict`); list fields given as
        lists are joined into the comma-separated form.

        Parameters
        ----------
        data : dict
            Field values by name (keys may use ``-`` or ``_``).
        where : str, optional
            What ``data`` came from, for error messages.

        Returns
        -------
        SimulateJob
            Not validated: call ``validate()``.
        """
        job = super().from_dict(data, where=where)
        lists = {f: _csv(getattr(job, f)) for f in ("ratios", "budgets", "algorithms")}
        return dataclasses.replace(job, **lists, variants=parse_variants(job.variants))

    def validate(self) -> None:
        """Every check of ``fslora simulate``, before anything is built (one line each)."""
        self.check_options()
        self.algorithm_names()
        self.client_budgets()
        self.algorithm_options()

    def algorithm_options(self) -> dict:
        """The variant options of every algorithm that has options.

        Returns
        -------
        dict
            ``{algorithm: {option: value}}``: the ``variants`` given, every other option at its
            default (one-line error for an unknown algorithm, option or value).
        """
        variants = self.variants or {}
        if not isinstance(variants, dict) or not all(isinstance(v, dict) for v in variants.values()):
            raise TypeError(f"variants must be a table {{algorithm: {{option: value}}}}, got {variants!r}")
        unknown = sorted(set(variants) - set(ALGORITHMS))
        if unknown:
            raise ValueError(f"variants: unknown algorithm {unknown}; choose from {','.join(ALGORITHMS)}")
        return {name: get_algorithm(name, **variants.get(name, {})).options
                for name, cls in ALGORITHMS.items() if cls.OPTIONS}

    def check_options(self) -> None:
        """The single-option ranges and combinations (no list is parsed yet)."""
        check_choice("family", self.family, sorted(FAMILIES))
        check_choice("client_optimizer", self.client_optimizer, ("sgd", "adamw"))
        check_choice("server_optimizer", self.server_optimizer, ("none", "sgd", "adam"))
        if self.budget_distribution is not None:
            check_choice("budget_distribution", self.budget_distribution, BUDGET_DISTRIBUTIONS)
        check_int("--clients", self.clients, low=1, high=MAX_CLIENTS)
        check_int("--rank", self.rank, low=1, high=MAX_RANK)
        check_int("--local-steps", self.local_steps, low=1, high=MAX_LOCAL_STEPS)
        check_positive_float("--lr", self.lr)
        check_int("--rounds", self.rounds, low=0, high=MAX_ROUNDS)
        check_int("--batch-size", self.batch_size, low=0)
        check_int("--m", self.m, low=1, high=MAX_DIM)
        check_int("--n", self.n, low=1, high=MAX_DIM)
        check_fraction("--client-fraction", self.client_fraction)
        check_int("--seed", self.seed, low=0)
        if self.server_lr is not None:
            check_positive_float("--server-lr", self.server_lr)
            if self.server_optimizer == "none":
                raise ValueError("--server-lr only applies with --server-optimizer sgd or adam")
        if self.budget_distribution is None and (self.r_min is not None or self.r_max is not None):
            raise ValueError("--r-min/--r-max only apply with --budget-distribution (uniform, normal, heavy_tail_low)")

    def output_names(self) -> list:
        """The files a run writes into its output directory.

        They are checked before the run (:func:`fslora_ref.outputs.check_output_names`): a directory
        named history.json would otherwise fail only after the whole run has computed.

        Returns
        -------
        list of str
            ``history.json``, ``simulate.png`` and ``checkpoint-<algorithm>.npz`` per algorithm of
            :meth:`algorithm_names`.
        """
        from .checkpoint import checkpoint_path
        return ["history.json", "simulate.png"] + [os.path.basename(checkpoint_path(".", a))
                                                   for a in self.algorithm_names()]

    def algorithm_names(self) -> list:
        """The algorithms to run: known names, each once, at least one.

        Returns
        -------
        list of str
            The names of ``algorithms``, in the order given.
        """
        text = self.algorithms
        if not isinstance(text, str):
            raise TypeError(f"--algorithms must be a comma-separated string or a list, got {text!r}")
        names = [a.strip() for a in text.split(",") if a.strip()]
        if not names:
            raise ValueError(f"--algorithms must name at least one of {','.join(ALGORITHMS)}, got {text!r}")
        unknown = [a for a in names if a not in ALGORITHMS]
        if unknown:
            raise ValueError(f"--algorithms: unknown {unknown}; choose from {','.join(ALGORITHMS)}")
        twice = sorted({a for a in names if names.count(a) > 1})
        if twice:
            raise ValueError(f"--algorithms lists {', '.join(twice)} more than once")
        return names

    def client_budgets(self) -> list:
        """k_i per client from ``budgets``, ``budget_distribution`` or ``ratios`` (in that order).

        Returns
        -------
        list of int, length clients
            The budgets, each in [1, rank].
        """
        if self.budgets is not None:
            budgets = _numbers(self.budgets, int, "--budgets")
            if len(budgets) != self.clients:
                raise ValueError(f"--budgets must list {self.clients} values (one per client), got {len(budgets)}")
            for i, k in enumerate(budgets):
                check_int(f"--budgets[{i}]", k, low=1, high=self.rank)
            return budgets
        if self.budget_distribution:
            r_min = check_int("--r-min", 1 if self.r_min is None else self.r_min, low=1, high=self.rank)
            r_max = check_int("--r-max", self.rank if self.r_max is None else self.r_max, low=r_min, high=self.rank)
            return draw_budgets(self.clients, r_min, r_max, self.budget_distribution, self.seed)
        ratios = _numbers(self.ratios or "", float, "--ratios")
        if not ratios or not all(0 < x <= 1 for x in ratios):
            raise ValueError(f"--ratios must be comma-separated numbers in (0, 1], got {self.ratios!r}")
        return budgets_from_ratios(self.rank, ratios, self.clients)
