"""The run configuration: which fslora job the run executes and how the server treats faults.

Every key is declared in the app's pyproject.toml ([tool.flwr.app.config]) and reaches the
ServerApp and every ClientApp unchanged:

    job                simulate | finetune
    job-args           the job's options as JSON (every `fslora simulate` / `fslora finetune` option)
    out                output directory on the ServerApp's host
    round-timeout      seconds the server waits for a round's replies
    on-missing         stop | continue (see strategy.py)
    discovery-timeout  seconds to wait for the SuperNodes and their answers before round 1
    poll-interval      seconds between the server's pulls for replies
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import numpy as np

from .strategy import ON_MISSING

JOBS = ("simulate", "finetune")
DEFAULTS = {"round-timeout": 600.0, "on-missing": "stop", "discovery-timeout": 300.0, "poll-interval": 0.5}


@dataclass(frozen=True)
class Settings:
    job: str
    args: argparse.Namespace
    out: str
    round_timeout: float
    on_missing: str
    discovery_timeout: float
    poll: float

    @classmethod
    def from_run_config(cls, rc) -> "Settings":
        job = rc.get("job")
        if job not in JOBS:
            raise ValueError(f"run config 'job' must be one of {JOBS}, got {job!r}")
        try:
            given = json.loads(rc.get("job-args") or "{}")
            if not isinstance(given, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            raise ValueError(f"run config 'job-args' must be a JSON object of {job} options ({exc})") from None
        defaults = job_defaults(job)
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(f"run config 'job-args' has options `fslora {job}` does not know: {unknown}")
        args = argparse.Namespace(**dict(defaults, **given))   # an option left out takes the command's default
        if rc.get("on-missing") not in ON_MISSING:
            raise ValueError(f"run config 'on-missing' must be one of {ON_MISSING}, got {rc.get('on-missing')!r}")
        numbers = {}
        for key in ("round-timeout", "discovery-timeout", "poll-interval"):
            value = rc.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"run config {key!r} must be a positive number of seconds, got {value!r}")
            numbers[key] = float(value)
        return cls(job, args, str(rc.get("out") or ""), numbers["round-timeout"], rc["on-missing"],
                   numbers["discovery-timeout"], numbers["poll-interval"])

    @property
    def n_clients(self) -> int:
        return int(self.args.clients)

    def wire_dtypes(self):
        """(server -> client, client -> server) float types: float64 for the NumPy reference; for
        the bridge the model's precision where that is lossless (a float32 model rounds what it
        installs to float32 anyway; bfloat16 values are exact in float32)."""
        if self.job == "simulate" or self.args.dtype == "float64":
            return np.float64, np.float64
        return (np.float32 if self.args.dtype == "float32" else np.float64), np.float32


def job_parser(job: str) -> argparse.ArgumentParser:
    """The option parser of `fslora <job>` (no torch import)."""
    if job == "simulate":
        from fslora_ref.cli_simulate import configure_parser
    else:
        from llm_bridge.cli import configure_parser
    p = argparse.ArgumentParser(prog=f"fslora {job}")
    configure_parser(p)
    return p


def job_defaults(job: str) -> dict:
    """Every option of `fslora <job>` with its default."""
    return vars(job_parser(job).parse_args([]))


def run_config(job: str, args: argparse.Namespace, out: str, **settings) -> dict:
    """The run-config dict for ``flwr run --run-config``; ``settings`` override DEFAULTS
    (keys with underscores, e.g. round_timeout=60)."""
    options = {k: v for k, v in vars(args).items() if k != "given"}   # the parser's bookkeeping, not an option
    rc = {"job": job, "job-args": json.dumps(options, sort_keys=True), "out": out, **DEFAULTS}
    for key, value in settings.items():
        name = key.replace("_", "-")
        if name not in DEFAULTS:
            raise TypeError(f"unknown run setting {key!r}")
        rc[name] = value
    Settings.from_run_config(rc)  # same checks as the nodes will make
    return rc
