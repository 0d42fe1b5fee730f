"""``fslora flower simulate|finetune``: the in-process command's job over a real Flower
deployment on 127.0.0.1 (deploy.py), writing the same history.json; ``--export-run-config``
writes the run config for ``flwr run`` against a SuperLink of your own instead.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from fslora_ref.outputs import prepare_output_dir
from fslora_ref.validation import check_positive_float

from .settings import DEFAULTS, JOBS, job_defaults, job_parser, run_config

APP_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLOWER_LOG = re.compile(r"^(\x1b\[\d+m)?(DEBUG|INFO|WARNING|ERROR)\s*(\x1b\[0m)?\s*:|^\s*$")


def add_flower_options(p):
    g = p.add_argument_group("Flower deployment")
    g.add_argument("--round-timeout", type=float, default=DEFAULTS["round-timeout"],
                   help="seconds the server waits for a round's replies (default %(default)s)")
    g.add_argument("--on-missing", choices=("stop", "continue"), default=DEFAULTS["on-missing"],
                   help="a client that does not answer in time: stop with an error naming it (resume with --resume), "
                        "or continue, averaging over the clients that replied")
    g.add_argument("--discovery-timeout", type=float, default=DEFAULTS["discovery-timeout"],
                   help="seconds to wait for the SuperNodes' answers before round 1 (first use converts SmolLM2)")
    g.add_argument("--start-timeout", type=float, default=60.0,
                   help="seconds for the local SuperLink and SuperNodes to come up")
    g.add_argument("--run-timeout", type=float, default=None, help="stop the run after this many seconds")
    g.add_argument("--export-run-config", metavar="FILE.toml",
                   help="write the run config for `flwr run <app> <superlink> --run-config FILE.toml` and exit "
                        "(multi-machine use; --out and the data paths are then paths on the hosts that read them, "
                        "checked there; options are checked here)")


def configure_parser(p):
    sub = p.add_subparsers(dest="flower_command", metavar="JOB")
    sub.required = True
    for job in JOBS:
        q = sub.add_parser(job, help=f"`fslora {job}` over a local Flower deployment (every {job} option works)",
                           parents=[job_parser(job)], add_help=False)
        add_flower_options(q)
    from . import bench
    bench.configure_parser(sub.add_parser("bench", help="equality, bytes per round and engine overhead, measured"))


def job_args(job, args) -> argparse.Namespace:
    """Only the job's own options (the ones `fslora <job>` knows), with absolute paths. The
    parser's record of which options were given explicitly (``given``) is kept for the checks;
    it is not part of the run config."""
    ns = argparse.Namespace(**{k: getattr(args, k) for k in job_defaults(job)})
    if hasattr(args, "given"):
        ns.given = set(args.given)
    ns.out = os.path.abspath(ns.out)
    if job == "finetune":
        if ns.model not in ("tiny", "smollm2"):
            ns.model = os.path.abspath(ns.model)
        ns.train_json = [_absolute_data_spec(f) for f in ns.train_json] if ns.train_json else None
        ns.eval_json = [_absolute_data_spec(f) for f in ns.eval_json] if ns.eval_json else None
    return ns


def _absolute_data_spec(spec: str) -> str:
    """A data file spec (``PATH`` or ``NAME=PATH``) with an absolute path and the same family."""
    from llm_bridge.commonsense import parse_spec
    family, path = parse_spec(spec)
    return os.path.abspath(path) if path == spec else f"{family}={os.path.abspath(path)}"


def validate(job, ns, local: bool = True):
    """The in-process command's own checks, before anything starts (one-line errors). local:
    the paths are on this machine (a local deployment), so they are checked too: the output
    directory and, with --resume, the checkpoints there against this very run, as `fslora
    <job>` does; an exported run config (paths on the SuperLink's host) gets the option checks.
    A --resume with nothing to resume is announced by the ServerApp, which runs the job, not here."""
    if job == "simulate":
        from fslora_ref.cli_simulate import build, output_names, plan_resume, run_identity
        from fslora_ref.outputs import check_output_names
        problem, config, names = build(ns)
        if local:
            prepare_output_dir(ns.out, "--out")
            check_output_names(ns.out, output_names(ns))
            if ns.resume:
                plan_resume(ns.out, names, problem, config, run_identity(ns, problem), resume=True, announce=False)
    else:
        from llm_bridge.cli import check_options, validate as check
        if local:
            check(ns, announce=False)
        else:
            check_options(ns)


def run(args) -> int:
    job = args.flower_command
    if job == "bench":
        from . import bench
        return bench.run(args)
    for name in ("round_timeout", "discovery_timeout", "start_timeout"):
        check_positive_float("--" + name.replace("_", "-"), getattr(args, name))
    if args.run_timeout is not None:
        check_positive_float("--run-timeout", args.run_timeout)
    ns = job_args(job, args)
    exporting = args.export_run_config is not None   # '' is a bad file name, not "no export"
    validate(job, ns, local=not exporting)
    rc = run_config(job, ns, ns.out, round_timeout=args.round_timeout, on_missing=args.on_missing,
                    discovery_timeout=args.discovery_timeout)
    if exporting:
        import tomli_w
        from fslora_ref.outputs import atomic_write_bytes, check_output_file
        check_output_file(args.export_run_config, "--export-run-config")
        atomic_write_bytes(args.export_run_config, tomli_w.dumps(rc).encode())
        print(f"wrote {args.export_run_config}; run it with: flwr run {APP_DIR} <superlink> "
              f"--run-config {args.export_run_config} --stream")
        return 0
    from .deploy import DeploymentError, LocalDeployment
    from .rounds import Ledger
    n = ns.clients
    try:
        with LocalDeployment(n, os.path.join(ns.out, "flower-logs"), start_timeout=args.start_timeout) as dep:
            print(f"flower: SuperLink on 127.0.0.1:{dep.port} and {n} SuperNodes up in {dep.start_seconds:.1f} s")
            result = dep.run(APP_DIR, rc, timeout=args.run_timeout, on_line=_echo)
    except DeploymentError as exc:
        print(f"fslora flower {job}: error: {exc}", file=sys.stderr)
        return 1
    if not result.ok:
        details = result.details.replace("ServerApp failed with exception: ", "")
        print(f"fslora flower {job}: error: {' '.join(details.split()) or result.status} "
              f"(run {result.run_id}, {result.status}; logs in {os.path.join(ns.out, 'flower-logs')})", file=sys.stderr)
        return Ledger.exit_code(ns.out, result.run_id)   # what `fslora <job>` exits with for the same error
    traffic = result.traffic
    print(f"flower: run {result.run_id} completed in {result.seconds:.1f} s; SuperLink traffic "
          f"{traffic.get('outbound-bytes', 0):,} B to nodes, {traffic.get('inbound-bytes', 0):,} B from nodes; "
          f"per-round costs in {os.path.join(ns.out, 'flower.json')}")
    return 0


def _echo(line: str) -> None:
    """Show the ServerApp's own output (progress, summary), not Flower's log lines."""
    if not FLOWER_LOG.match(line):
        print(line, end="", flush=True)
