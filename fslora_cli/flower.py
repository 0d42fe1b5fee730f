"""``fslora flower simulate|finetune|bench``: the in-process command's job over a real Flower
deployment on 127.0.0.1 (:mod:`fslora_cli.flower_deploy`), writing the same history.json;
``--export-run-config`` writes the run config for ``flwr run`` against a SuperLink of your own
instead. The job is the typed job of ``fslora simulate`` / ``fslora finetune`` (every option,
``--config`` too); it reaches the ServerApp and every ClientApp in the run config.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from fslora_ref.algorithms import ALGORITHMS
from fslora_ref.outputs import check_output_names, prepare_output_dir
from fslora_ref.validation import check_positive_float

from .flower_deploy import APP_DIR, app_module
from .parser import CommandParser, integer_in

JOBS = ("simulate", "finetune")
FLOWER_LOG = re.compile(r"^(\x1b\[\d+m)?(DEBUG|INFO|WARNING|ERROR)\s*(\x1b\[0m)?\s*:|^\s*$")


def _command(job: str):
    if job == "simulate":
        from . import simulate as command
    else:
        from . import finetune as command
    return command


def job_parser(job: str) -> argparse.ArgumentParser:
    """The option parser of `fslora <job>` (no torch import)."""
    p = CommandParser(prog=f"fslora {job}")
    _command(job).configure_parser(p)
    return p


def add_flower_options(p):
    defaults = app_module("settings").DEFAULTS
    g = p.add_argument_group("Flower deployment")
    g.add_argument("--round-timeout", type=float, default=defaults["round-timeout"],
                   help="seconds the server waits for a round's replies (default %(default)s)")
    g.add_argument("--on-missing", choices=("stop", "continue"), default=defaults["on-missing"],
                   help="a client that does not answer in time: stop with an error naming it (resume with --resume), "
                        "or continue, averaging over the clients that replied")
    g.add_argument("--on-bad-update", choices=("stop", "drop"), default=defaults["on-bad-update"],
                   help="an update with a NaN or infinity, a wrong shape or dtype, or a norm above --max-update-norm: "
                        "stop with an error naming the client, or drop it from the round (default %(default)s)")
    g.add_argument("--max-update-norm", type=float, default=None, metavar="BOUND",
                   help="refuse a client's upload whose Euclidean norm (all its arrays) exceeds BOUND (default: no bound)")
    g.add_argument("--server-eval-data", metavar="FILE", default="",
                   help="simulate: a held-out file on the server's host (`fslora flower partition --held-out K`); "
                        "Strategy.start's evaluate_fn evaluates the global model on it each round, into flower.json")
    g.add_argument("--discovery-timeout", type=float, default=defaults["discovery-timeout"],
                   help="seconds to wait for the SuperNodes' answers before round 1 (first use converts SmolLM2)")
    g.add_argument("--start-timeout", type=float, default=60.0,
                   help="seconds for the local SuperLink and SuperNodes to come up")
    g.add_argument("--run-timeout", type=float, default=None,
                   help="stop the run after this many seconds (default: no limit)")
    g.add_argument("--engine", choices=("deployment", "simulation"), default="deployment",
                   help="deployment: a SuperLink and one SuperNode process per client (TLS, node auth); simulation: "
                        "Flower's simulation engine (Ray), --clients virtual SuperNodes in one process tree "
                        "(needs the `flower` extra's Ray; many clients on one machine)")
    g.add_argument("--client-cpus", type=integer_in(1), default=1,
                   help="simulation engine: CPUs reserved per ClientApp (how many run at once)")
    g.add_argument("--node-local", action="store_true",
                   help="deployment engine: write each client's partition to <out>/node-data (finetune: one private "
                        "directory per node) and start each SuperNode with its own file and its budget k_i in "
                        "--node-config (data=..., budget=...); the server then plans from what the nodes announce "
                        "(finetune: it never reads --train-json)")
    g.add_argument("--insecure", action="store_true",
                   help="start the local SuperLink and SuperNodes without TLS and without SuperNode authentication "
                        "(by default: a throw-away CA, TLS, and only this deployment's node keys admitted)")
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
    from . import flower_bench
    flower_bench.configure_parser(sub.add_parser("bench", help="equality, bytes per round and engine overhead, measured"))
    part = sub.add_parser("partition", help="write one data file per client of a simulate job (for node-local data: "
                                            "--node-config 'data=\"DIR/partition-<i>.npz\"')",
                          parents=[job_parser("simulate")], add_help=False)
    part.set_defaults(partition=True)
    part.add_argument("--held-out", type=integer_in(0), default=0, metavar="K",
                      help="also write <out>/held-out.npz: K fresh samples of each client's distribution, pooled, for "
                           "the server's own evaluation (--server-eval-data); 0: none")
    fpart = sub.add_parser("finetune-partition",
                           help="write one training-data file per client of a finetune job (the split `fslora finetune` "
                                "makes; for node-local data: --node-config 'data=\"DIR/partition-<i>.json\"')",
                           parents=[job_parser("finetune")], add_help=False)
    fpart.set_defaults(partition=True)
    fab = sub.add_parser("fab", help="build the Flower App Bundle of flower_app/ with flwr build")
    fab.add_argument("--out", default=".", help="directory to write the .fab into (.: the current one)")


def job_args(job, args) -> argparse.Namespace:
    """Only the job's own options (the ones `fslora <job>` knows), with absolute paths. The
    parser's record of which options were given explicitly (``given``) is kept for the checks."""
    names = [*app_module("settings").job_class(job).field_names(), "out", "resume", "config"]
    if job == "finetune":
        names.append("stop_after")
    else:  # the --<algorithm>-<option> variant flags (fslora_cli.simulate) become the job's `variants`
        names += [k for k in vars(args) if any(k.startswith(f"{a}_") for a in ALGORITHMS)]
    ns = argparse.Namespace(**{k: getattr(args, k) for k in names})
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


def typed_job(job: str, ns):
    """(the typed job, its run options) from ``job_args``' namespace, checked as `fslora <job>` checks
    it; a finetune job's model directory and data files (from a --config file too) made absolute."""
    spec = _command(job).job_from_args(ns)
    if job == "simulate":
        return spec, {"resume": ns.resume}
    absolute = {"train_json": tuple(_absolute_data_spec(f) for f in spec.train_json) if spec.train_json else None,
                "eval_json": tuple(_absolute_data_spec(f) for f in spec.eval_json) if spec.eval_json else None}
    if spec.model not in ("tiny", "smollm2"):
        absolute["model"] = os.path.abspath(spec.model)
    return spec.replace(**absolute), {"resume": ns.resume, "stop_after": ns.stop_after}


def validate(job, spec, out, resume, local: bool = True):
    """The in-process command's own checks, before anything starts (one-line errors). local:
    the paths are on this machine (a local deployment), so they are checked too: the output
    directory and, with --resume, the checkpoints there against this very run, as `fslora
    <job>` does; an exported run config (paths on the SuperLink's host) gets the option checks.
    A --resume with nothing to resume is announced by the ServerApp, which runs the job, not here."""
    if job == "simulate":
        from fslora_ref.simulate import build, plan_resume, run_identity
        problem, config, names = build(spec)
        if local:
            prepare_output_dir(out, "--out")
            check_output_names(out, spec.output_names())
            if resume:
                plan_resume(out, names, problem, config, run_identity(spec, problem), resume=True, announce=False,
                            options=spec.algorithm_options())
    else:
        from llm_bridge.job import check_run
        if local:
            check_run(spec, out, resume=resume, announce=False)
        else:
            spec.validate()


def run_config(job: str, args, out: str, **settings) -> dict:
    """The run config of the job the parsed options ``args`` describe (see fslora_flower.settings.run_config)."""
    spec, run_options = typed_job(job, args)
    return app_module("settings").run_config(job, spec, out, **run_options, **settings)


def run(args) -> int:
    job = args.flower_command
    if job == "bench":
        from . import flower_bench
        return flower_bench.run(args)
    if job == "partition":
        if args.held_out < 0:
            print(f"fslora flower partition: error: --held-out must be an integer >= 0, got {args.held_out}",
                  file=sys.stderr)
            return 2
        ns = job_args("simulate", args)
        spec, _ = typed_job("simulate", ns)
        validate("simulate", spec, ns.out, False, local=False)
        write_partitions = app_module("partition").write_partitions
        paths = write_partitions(spec, ns.out)
        if args.held_out:
            held = app_module("partition").write_held_out(spec, os.path.join(ns.out, "held-out.npz"), args.held_out)
            print(f"wrote {held}: give it to the server with --server-eval-data {held}")
        budgets = spec.client_budgets()
        print(f"wrote {len(paths)} partition files in {ns.out}; start SuperNode i with")
        print(f"  --node-config 'partition-id=<i> num-partitions={len(paths)} data=\"{os.path.join(ns.out, 'partition-<i>.npz')}\" "
              f"budget=<k_i>'   (this job's k_i: {','.join(map(str, budgets))})")
        return 0
    if job == "finetune-partition":
        return finetune_partition(args)
    if job == "fab":
        from .flower_deploy import DeploymentError
        from .flower_fab import build_fab
        try:
            print(f"wrote {build_fab(args.out)}")
        except DeploymentError as exc:
            print(f"fslora flower fab: error: {exc}", file=sys.stderr)
            return 1
        return 0
    for name in ("round_timeout", "discovery_timeout", "start_timeout"):
        check_positive_float("--" + name.replace("_", "-"), getattr(args, name))
    if args.run_timeout is not None:
        check_positive_float("--run-timeout", args.run_timeout)
    if args.node_local and args.engine != "deployment":
        print(f"fslora flower {job}: error: --node-local is for the deployment engine (--engine deployment)",
              file=sys.stderr)
        return 2
    if args.client_cpus < 1:
        print(f"fslora flower {job}: error: --client-cpus must be an integer >= 1, got {args.client_cpus}",
              file=sys.stderr)
        return 2
    if args.max_update_norm is not None:
        check_positive_float("--max-update-norm", args.max_update_norm)
    ns = job_args(job, args)
    spec, run_options = typed_job(job, ns)
    exporting = args.export_run_config is not None   # '' is a bad file name, not "no export"
    validate(job, spec, ns.out, ns.resume, local=not exporting)
    rc = app_module("settings").run_config(job, spec, ns.out, **run_options, round_timeout=args.round_timeout,
                                           on_missing=args.on_missing, discovery_timeout=args.discovery_timeout,
                                           on_bad_update=args.on_bad_update,
                                           max_update_norm=args.max_update_norm or 0.0,
                                           server_eval_data=os.path.abspath(args.server_eval_data)
                                           if args.server_eval_data else "")
    if exporting:
        import tomli_w
        from fslora_ref.outputs import atomic_write_bytes, check_output_file
        check_output_file(args.export_run_config, "--export-run-config")
        atomic_write_bytes(args.export_run_config, tomli_w.dumps(rc).encode())
        print(f"wrote {args.export_run_config}; run it with: flwr run {APP_DIR} <superlink> "
              f"--run-config {args.export_run_config} --stream")
        return 0
    if args.insecure and args.engine == "deployment":
        print(f"fslora flower {job}: warning: --insecure: no TLS and no SuperNode authentication; any process on "
              "this machine can join as a client, read the traffic and use the SuperLink's Control API",
              file=sys.stderr)
    result = _run_with_retries(job, args, spec, ns, rc)
    if isinstance(result, int):
        return result
    if not result.ok:
        from .flower_retry import engine_start_failure
        details = engine_start_failure(result.output) if args.engine == "simulation" else None
        details = details or result.details.replace("ServerApp failed with exception: ", "")
        print(f"fslora flower {job}: error: {' '.join(details.split()) or result.status} "
              f"(run {result.run_id}, {result.status}; logs in {os.path.join(ns.out, 'flower-logs')})", file=sys.stderr)
        # what `fslora <job>` exits with for the same error
        return app_module("rounds").Ledger.exit_code(ns.out, result.run_id)
    traffic = result.traffic
    print(f"flower: run {result.run_id} completed in {result.seconds:.1f} s; SuperLink traffic "
          f"{traffic.get('outbound-bytes', 0):,} B to nodes, {traffic.get('inbound-bytes', 0):,} B from nodes; "
          f"per-round costs in {os.path.join(ns.out, 'flower.json')}")
    return 0


def _deployment(job, args, spec, ns):
    """The (not yet started) local deployment the options ask for."""
    from .flower_deploy import LocalDeployment, SimulationDeployment
    log_dir = os.path.join(ns.out, "flower-logs")
    if args.engine == "simulation":
        return SimulationDeployment(spec.clients, log_dir, start_timeout=args.start_timeout,
                                    client_cpus=args.client_cpus)
    node_configs = None
    if args.node_local and job == "simulate":
        paths = app_module("partition").write_partitions(spec, os.path.join(ns.out, "node-data"))
        node_configs = [f'data="{p}" budget={k}' for p, k in zip(paths, spec.client_budgets())]
    elif args.node_local:
        from llm_bridge.node_data import write_partition_files
        paths = write_partition_files(spec, os.path.join(ns.out, "node-data"), private=True)
        node_configs = [f'data="{p}" budget={k}' for p, k in zip(paths, finetune_budgets(spec))]
    return LocalDeployment(spec.clients, log_dir, start_timeout=args.start_timeout, insecure=args.insecure,
                           node_configs=node_configs)


def _run_with_retries(job, args, spec, ns, rc):
    """Run the job on a fresh local deployment; on the simulation engine, run it again (at most
    ENGINE_START_ATTEMPTS times in all) while the engine fails to start before anything was trained
    (see fslora_cli.flower_retry). Returns the last attempt's RunResult, or the exit code of a
    deployment that failed (the error already said)."""
    import time
    from . import flower_retry as retry
    from .flower_deploy import DeploymentError
    Ledger = app_module("rounds").Ledger
    attempts = retry.ENGINE_START_ATTEMPTS if args.engine == "simulation" else 1
    deadline = None if args.run_timeout is None else time.monotonic() + args.run_timeout
    failed = []   # the ledger entries of the attempts whose engine did not start
    if ns.resume:   # we hold --out's lock: an entry still "running" is a killed launcher's
        Ledger.mark_interrupted(ns.out)
    for attempt in range(1, attempts + 1):
        runs_before = Ledger.count(ns.out)
        timeout = None if deadline is None else max(deadline - time.monotonic(), 1.0)
        try:
            with _deployment(job, args, spec, ns) as dep:
                if args.engine == "simulation":
                    print(f"flower: simulation engine SuperLink on 127.0.0.1:{dep.port}, {spec.clients} virtual SuperNodes")
                else:
                    mode = "without TLS (--insecure)" if args.insecure else "TLS, SuperNode authentication"
                    print(f"flower: SuperLink on 127.0.0.1:{dep.port} and {spec.clients} SuperNodes up in "
                          f"{dep.start_seconds:.1f} s ({mode})")
                result = dep.run(APP_DIR, rc, timeout=timeout, on_line=_echo)
        except DeploymentError as exc:
            Ledger.mark_crashed(ns.out, str(exc), first=runs_before)   # the ServerApp could not say it
            retry.keep_failed_attempts(ns.out, failed, None)
            print(f"fslora flower {job}: error: {exc}", file=sys.stderr)
            return 1
        cause = None if result.ok or args.engine != "simulation" else retry.engine_start_failure(result.output)
        if cause is None:
            break
        again = attempt < attempts and retry.trained_nothing(retry.attempt_entries(ns.out, result.run_id))
        failed += retry.record_failed_attempt(ns.out, result.run_id, cause + ("; run again" if again else ""))
        if not again:
            break
        print(f"fslora flower {job}: {cause}; nothing was trained: running the job again in a fresh deployment "
              f"(attempt {attempt + 1} of {attempts})", file=sys.stderr, flush=True)
        _keep_attempt_log(os.path.join(ns.out, "flower-logs"), attempt)
    retry.keep_failed_attempts(ns.out, failed, result.run_id)
    return result


def _keep_attempt_log(log_dir: str, attempt: int) -> None:
    """Keep a failed attempt's superlink.log (the next deployment writes a new one); run.log is appended to."""
    log = os.path.join(log_dir, "superlink.log")
    if os.path.exists(log):
        os.replace(log, os.path.join(log_dir, f"superlink-attempt-{attempt}.log"))


def finetune_budgets(spec) -> list:
    """k_i of every client of the FinetuneJob ``spec``: its ``budgets``, else its ratios of the rank."""
    from fslora_ref.config import budgets_from_ratios
    return list(spec.budgets) if spec.budgets is not None else budgets_from_ratios(spec.rank, spec.ratios, spec.clients)


def finetune_partition(args) -> int:
    """``fslora flower finetune-partition``: one JSON file of training examples per client in --out."""
    ns = job_args("finetune", args)
    spec, _ = typed_job("finetune", ns)
    spec.validate()
    spec.check_inputs(held_out=False)
    from llm_bridge.node_data import write_partition_files
    paths = write_partition_files(spec, ns.out)
    print(f"wrote {len(paths)} partition files in {ns.out}; start SuperNode i with")
    print(f"  --node-config 'partition-id=<i> num-partitions={len(paths)} data=\"{os.path.join(ns.out, 'partition-<i>.json')}\" "
          f"budget=<k_i>'   (this job's k_i: {','.join(map(str, finetune_budgets(spec)))})")
    return 0


def _echo(line: str) -> None:
    """Show the ServerApp's own output (progress, summary), not Flower's log lines."""
    if not FLOWER_LOG.match(line):
        print(line, end="", flush=True)
