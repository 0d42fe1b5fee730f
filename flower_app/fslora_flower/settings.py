"""The run configuration: which fslora job the run executes and how the server treats faults.

Every key is declared in the app's pyproject.toml ([tool.flwr.app.config]) and reaches the
ServerApp and every ClientApp unchanged:

    job                simulate | finetune
    job-args           the job as JSON: the fields of fslora_ref.jobs.SimulateJob / llm_bridge.job.FinetuneJob
                       (a field left out takes its default), plus the run's `out` and `resume` (and
                       finetune's `stop_after`): every `fslora simulate` / `fslora finetune` option
    out                output directory on the ServerApp's host
    round-timeout      seconds the server waits for a round's replies
    on-missing         stop | continue (see strategy.py)
    on-bad-update      stop | drop: an update with NaN/inf, a wrong shape or dtype, or a norm above the bound
    max-update-norm    bound on the Euclidean norm of one client's upload; 0 = no bound
    discovery-timeout  seconds to wait for the SuperNodes and their answers before round 1
    poll-interval      seconds between the server's pulls for replies
    server-eval-data   a held-out file on the ServerApp's host (``fslora flower partition --held-out K``):
                       Strategy.start's evaluate_fn evaluates the global model on it, into flower.json
                       ("" = none; simulate jobs)

Typed keys a Flower user can set with ``flwr run ... --run-config 'num-server-rounds=20 fslora.rank=8'``
override ``job-args`` (declared in pyproject.toml with "" = not set, the job-args value stands):

    num-server-rounds  the job's rounds (0 = not set)
    fslora.<field>     any field of the job, hyphenated: fslora.rank, fslora.budgets ("2,4,8"),
                       fslora.clients, fslora.lr, fslora.local-steps, fslora.algorithms, fslora.seed, ...
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from .strategy import ON_BAD_UPDATE, ON_MISSING

JOBS = ("simulate", "finetune")
DEFAULTS = {"round-timeout": 600.0, "on-missing": "stop", "discovery-timeout": 300.0, "poll-interval": 0.5,
            "on-bad-update": "stop", "max-update-norm": 0.0, "server-eval-data": ""}


RUN_OPTIONS = {"simulate": ("out", "resume"), "finetune": ("out", "resume", "stop_after")}   # not job fields


def job_class(job: str):
    """The job dataclass of a run (FinetuneJob is imported only for finetune runs: a simulate run needs no torch).

    Parameters
    ----------
    job : str
        ``"simulate"`` or ``"finetune"`` (anything but ``"simulate"`` is taken as finetune).

    Returns
    -------
    type
        :class:`fslora_ref.jobs.SimulateJob` or :class:`llm_bridge.job.FinetuneJob`.
    """
    if job == "simulate":
        from fslora_ref.jobs import SimulateJob
        return SimulateJob
    from llm_bridge.job import FinetuneJob
    return FinetuneJob


@dataclass(frozen=True)
class Settings:
    """What a run config says: the typed job and how the server treats faults.

    Made by :meth:`from_run_config`, which checks every key (the ServerApp and every ClientApp read
    the same run config).

    Parameters
    ----------
    job : str
        ``"simulate"`` or ``"finetune"``.
    args : SimulateJob or FinetuneJob
        The typed job.
    out : str
        The output directory on the ServerApp's host.
    round_timeout : float
        Seconds the server waits for a round's replies.
    on_missing : {"stop", "continue"}
        What a participant without a usable reply does to the round.
    discovery_timeout : float
        Seconds to wait for the SuperNodes and their answers before round 1.
    poll : float
        Seconds between the server's pulls for replies.
    resume : bool, default False
        Continue from the checkpoint in ``out``.
    stop_after : int, optional
        Finetune only: stop after this many rounds (None: run them all).
    on_bad_update : {"stop", "drop"}, default "stop"
        What a refused update does to the round.
    max_update_norm : float, optional
        A bound on the Euclidean norm of a client's upload (None: no bound).
    server_eval_data : str, default ""
        A held-out file on the ServerApp's host for ``Strategy.start``'s evaluate_fn ("": none;
        simulate jobs).
    """

    job: str
    args: object
    out: str
    round_timeout: float
    on_missing: str
    discovery_timeout: float
    poll: float
    resume: bool = False
    stop_after: int | None = None
    on_bad_update: str = "stop"
    max_update_norm: float | None = None    # None: no bound
    server_eval_data: str = ""              # held-out file for Strategy.start's evaluate_fn ("": none)

    @classmethod
    def from_run_config(cls, rc) -> "Settings":
        """Read and check a run config (the keys: the module docstring).

        Typed keys (``num-server-rounds``, ``fslora.<field>``) override ``job-args``; job fields left
        out take their defaults.

        Parameters
        ----------
        rc : Mapping
            The run config (``context.run_config`` in a ServerApp or ClientApp).

        Returns
        -------
        Settings

        Raises
        ------
        ValueError
            One line naming the key: an unknown job, ``job-args`` that is not a JSON object or has
            options the job does not know, a bad job field, an unknown policy, a negative or
            non-finite ``max-update-norm``, or a timeout or poll interval that is not a positive number.
        """
        job = rc.get("job")
        if job not in JOBS:
            raise ValueError(f"run config 'job' must be one of {JOBS}, got {job!r}")
        try:
            given = json.loads(rc.get("job-args") or "{}")
            if not isinstance(given, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise ValueError(f"run config 'job-args' must be a JSON object of {job} options ({exc})") from None
        kind = job_class(job)
        given.update(typed_overrides(rc, kind))
        unknown = sorted(set(given) - set(kind.field_names()) - set(RUN_OPTIONS[job]))
        if unknown:
            raise ValueError(f"run config 'job-args' has options `fslora {job}` does not know: {unknown}")
        spec = kind.from_dict({k: v for k, v in given.items() if k not in RUN_OPTIONS[job]})  # left out: the default
        if rc.get("on-missing") not in ON_MISSING:
            raise ValueError(f"run config 'on-missing' must be one of {ON_MISSING}, got {rc.get('on-missing')!r}")
        on_bad = rc.get("on-bad-update", DEFAULTS["on-bad-update"])
        if on_bad not in ON_BAD_UPDATE:
            raise ValueError(f"run config 'on-bad-update' must be one of {ON_BAD_UPDATE}, got {on_bad!r}")
        bound = rc.get("max-update-norm", DEFAULTS["max-update-norm"])
        if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not 0 <= bound < float("inf"):
            raise ValueError(f"run config 'max-update-norm' must be a finite number >= 0 (0: no bound), got {bound!r}")
        held = rc.get("server-eval-data", DEFAULTS["server-eval-data"])
        if not isinstance(held, str) or (held and job != "simulate"):
            raise ValueError(f"run config 'server-eval-data' must be the path of a held-out file (simulate jobs), "
                             f"got {held!r}")
        numbers = {}
        for key in ("round-timeout", "discovery-timeout", "poll-interval"):
            value = rc.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"run config {key!r} must be a positive number of seconds, got {value!r}")
            numbers[key] = float(value)
        return cls(job, spec, str(rc.get("out") or ""), numbers["round-timeout"], rc["on-missing"],
                   numbers["discovery-timeout"], numbers["poll-interval"], resume=bool(given.get("resume", False)),
                   stop_after=given.get("stop_after"), on_bad_update=on_bad,
                   max_update_norm=float(bound) if bound > 0 else None, server_eval_data=held)

    @property
    def n_clients(self) -> int:
        return int(self.args.clients)

    def wire_dtypes(self):
        """The float types of the arrays on the wire, each way.

        float64 for the NumPy reference; for the bridge the model's precision where that is
        lossless (a float32 model rounds what it installs to float32 anyway; bfloat16 values are
        exact in float32).

        Returns
        -------
        down : type
            Server -> client: float64, or float32 for a float32 model.
        up : type
            Client -> server: float64 for the reference or a float64 model, else float32.
        """
        if self.job == "simulate" or self.args.dtype == "float64":
            return np.float64, np.float64
        return (np.float32 if self.args.dtype == "float32" else np.float64), np.float32


PREFIX = "fslora."


def typed_overrides(rc, kind) -> dict:
    """The job fields that the typed run-config keys set (see the module docstring).

    Parameters
    ----------
    rc : Mapping
        The run config.
    kind : type
        The job dataclass (:func:`job_class`), whose fields the ``fslora.*`` keys must name.

    Returns
    -------
    dict
        ``{job field: value}``: ``rounds`` from ``num-server-rounds`` if not 0, and every
        ``fslora.<field>`` that is not ``""`` (hyphens read as underscores).

    Raises
    ------
    ValueError
        If ``num-server-rounds`` is not an integer >= 0, or a set ``fslora.*`` key names no field of
        the job.

    Examples
    --------
    >>> from fslora_ref.jobs import SimulateJob
    >>> from fslora_flower.settings import typed_overrides
    >>> typed_overrides({"num-server-rounds": 20, "fslora.local-steps": 3, "fslora.rank": ""}, SimulateJob)
    {'rounds': 20, 'local_steps': 3}
    """
    out = {}
    rounds = rc.get("num-server-rounds", 0)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"run config 'num-server-rounds' must be an integer >= 0 (0: the job's), got {rounds!r}")
    if rounds:
        out["rounds"] = rounds
    fields = set(kind.field_names())
    for key, value in rc.items():
        if not key.startswith(PREFIX) or value == "":
            continue
        name = key[len(PREFIX):].replace("-", "_")
        if name not in fields:
            raise ValueError(f"run config {key!r} is not an option of `fslora {kind.NAME}`")
        out[name] = value
    return out


def typed_keys() -> dict:
    """Every typed run-config key with its "not set" value, as the app's pyproject.toml declares them.

    Returns
    -------
    dict
        ``{"num-server-rounds": 0, "fslora.<field>": "" ...}`` for every field of SimulateJob and, if
        the bridge's dependencies are installed, FinetuneJob (hyphenated).
    """
    from fslora_ref.jobs import SimulateJob
    names = list(SimulateJob.field_names())
    try:
        from llm_bridge.job import FinetuneJob
        names += [n for n in FinetuneJob.field_names() if n not in names]
    except ImportError:   # the bridge's dependencies are not installed: simulate keys only
        pass
    return {"num-server-rounds": 0, **{PREFIX + n.replace("_", "-"): "" for n in names}}


def run_config(job: str, spec, out: str, *, resume: bool = False, stop_after: int | None = None, **settings) -> dict:
    """The run-config dict for ``flwr run --run-config``.

    Parameters
    ----------
    job : str
        simulate | finetune.
    spec : SimulateJob or FinetuneJob
        The job; written as ``job-args`` with the run options ``out`` and ``resume`` (and
        finetune's ``stop_after``).
    out : str
        Output directory on the ServerApp's host.
    resume : bool, default False
        Continue from the checkpoint in ``out`` (written into ``job-args``).
    stop_after : int, optional
        Finetune only: stop after this many rounds (written into ``job-args``; ignored for simulate).
    **settings
        Override DEFAULTS (keys with underscores, e.g. round_timeout=60).

    Returns
    -------
    dict
        ``{"job", "job-args" (JSON), "out", "round-timeout", "on-missing", ...}``, checked as the nodes
        will check it (:meth:`Settings.from_run_config`).

    Raises
    ------
    TypeError
        If a setting is not a key of DEFAULTS.
    ValueError
        If the run config does not pass :meth:`Settings.from_run_config`.
    """
    options = dict(spec.to_dict(), out=out, resume=bool(resume))
    if job == "finetune":
        options["stop_after"] = stop_after
    rc = {"job": job, "job-args": json.dumps(options, sort_keys=True), "out": out, **DEFAULTS}
    for key, value in settings.items():
        name = key.replace("_", "-")
        if name not in DEFAULTS:
            raise TypeError(f"unknown run setting {key!r}")
        rc[name] = value
    Settings.from_run_config(rc)  # same checks as the nodes will make
    return rc
