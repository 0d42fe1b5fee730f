"""``fslora flower bench``: the README's Flower figures, measured side by side in one run.

(1) equality: the same NumPy job in process and over a loopback deployment (history.json
    bytes, final factors); (2) bytes each FSLoRA client actually sent and received per round
    (Flower's serialised objects) against the accounted floats, at two global ranks r with the
    same budgets k_i: they must follow k_i, not r; the SuperLink's own per-run traffic counters
    next to them; (3) engine overhead per round against the in-process round. Part "bridge": the
    same for the tiny Llama (float32); part "smollm2": the ClientApp's per-round start-up with and
    without the converted-model cache.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .flower_deploy import APP_DIR, app_module
from .parser import integer_in

SIMULATE = dict(family="least_squares", m=48, n=32, local_steps=5, algorithms="fslora", seed=1, batch_size=16, lr=0.002)
FINETUNE = dict(model="tiny", rank=8, alpha=16.0, clients=2, ratios=(0.25, 0.5), rounds=2, local_steps=2, batch_size=2,
                lr=0.02, examples_per_client=12, eval_per_family=3, eval_every=1, verify_adapter=False, device="cpu")


def configure_parser(p):
    p.add_argument("--clients", type=integer_in(1, 16), default=4,
                   help="SuperNodes, client i with budget 2^i (default 4: budgets 2,4,8,16)")
    p.add_argument("--rounds", type=integer_in(1, 1000), default=3, help="rounds T of each measured run")
    p.add_argument("--ranks", default="16,64", help="global ranks r to compare at the same budgets")
    p.add_argument("--parts", default="numpy,bridge",
                   help="comma-separated subset of numpy (equality, bytes, overhead), bridge (tiny Llama, float32), "
                        "smollm2 (ClientApp start-up: converted cache vs gguf)")
    p.add_argument("--json", metavar="FILE", help="write every figure to this file")


def _quiet(fn, *a, **k):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn(*a, **k)


def _ledger(out):
    with open(os.path.join(out, "flower.json")) as fh:
        return json.load(fh)["runs"][-1]


def numpy_part(dep, tmp, clients, rounds, ranks) -> dict:
    from fslora_ref import simulate
    from fslora_ref.federation import checkpoint_path, load_checkpoint
    from fslora_ref.jobs import SimulateJob
    run_config = app_module("settings").run_config
    budgets = ",".join(str(2 ** (i + 1)) for i in range(clients))
    result = {"budgets": budgets, "ranks": {}}
    for r in ranks:
        job = SimulateJob(clients=clients, rank=r, budgets=budgets, rounds=rounds, **SIMULATE)
        ref, fl = os.path.join(tmp, f"in-process-r{r}"), os.path.join(tmp, f"flower-r{r}")
        _quiet(simulate.run_simulate, job, ref)
        in_process = in_process_round_seconds(job)
        run = dep.run(APP_DIR, run_config("simulate", job, fl, round_timeout=120), timeout=600)
        if not run.ok:
            raise RuntimeError(f"flower run failed: {run.details}")
        with open(os.path.join(ref, "history.json"), "rb") as a, open(os.path.join(fl, "history.json"), "rb") as b:
            same_history = a.read() == b.read()
        problem, config, _ = simulate.build(job)
        identity = simulate.run_identity(job, problem)
        sa, sb = (load_checkpoint(checkpoint_path(d, "fslora"), "fslora", config, identity=identity)[0]
                  for d in (ref, fl))
        same_factors = all(np.array_equal(x, y) for p, q in zip(sa.layers, sb.layers) for x, y in zip(p, q))
        ledger = _ledger(fl)
        rows = ledger["rounds"]
        per_client = {c: {"k": config.budgets[int(c)],
                          **{key: [row["clients"][c][key] for row in rows]
                             for key in ("down-floats", "down-bytes", "up-floats", "up-bytes")},
                          **{key: float(np.mean([row["clients"][c][key] for row in rows]))
                             for key in ("process-seconds", "process-cpu-seconds")}}
                      for c in rows[0]["clients"]}
        payload = {way: sum(row["clients"][c].get(f"{way}-bytes", 0) for row in rows for c in row["clients"])
                   for way in ("down", "up")}
        result["ranks"][r] = {"history_identical": same_history, "factors_identical": same_factors,
                              "in_process_seconds_per_round": in_process,
                              "flower_seconds_per_round": float(np.mean([row["seconds"] for row in rows])),
                              "discovery_seconds": ledger.get("discovery_seconds"),
                              "clients": per_client, "payload_bytes_all_rounds": payload,
                              "superlink_traffic": run.traffic, "run_seconds": run.seconds}
    return result


def in_process_round_seconds(job) -> float:
    """Median wall time of the in-process round (run_round: configure, train every client,
    aggregate), the part a Flower round replaces."""
    from fslora_ref.algorithms import get_algorithm
    from fslora_ref.federation import run_round
    from fslora_ref.simulate import build
    problem, config, _ = build(job)
    algo, times = get_algorithm("fslora"), []
    state = algo.init(problem, config)
    for t in range(config.rounds):
        t0 = time.perf_counter()
        state, _, _ = run_round(algo, state, problem, config, t)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bridge_part(tmp) -> dict:
    from llm_bridge.finetune import finetune
    from llm_bridge.job import FinetuneJob, check_run

    from .flower_deploy import LocalDeployment
    job = FinetuneJob(**FINETUNE)
    ref, fl = os.path.join(tmp, "bridge-in-process"), os.path.join(tmp, "bridge-flower")
    check_run(job, ref)
    _quiet(finetune, job, ref)
    with LocalDeployment(2, os.path.join(tmp, "bridge-logs")) as dep:
        run = dep.run(APP_DIR, app_module("settings").run_config("finetune", job, fl, round_timeout=300), timeout=900)
    if not run.ok:
        raise RuntimeError(f"flower run failed: {run.details}")
    from safetensors.numpy import load_file
    wa, wb = (load_file(os.path.join(d, "adapter", "adapter_model.safetensors")) for d in (ref, fl))
    rel = max(float(np.linalg.norm(wb[k] - wa[k]) / max(np.linalg.norm(wa[k]), 1e-300)) for k in wa)
    ha, hb = (json.load(open(os.path.join(d, "history.json"))) for d in (ref, fl))
    rows = _ledger(fl)["rounds"]
    return {"max_relative_difference": rel, "bit_identical": all(np.array_equal(wa[k], wb[k]) for k in wa),
            "in_process_seconds_per_round": float(np.mean([r["seconds"] for r in ha["rounds"]])),
            "flower_seconds_per_round": float(np.mean([r["seconds"] for r in hb["rounds"]])),
            "clientapp_startup_seconds": float(np.mean([c["process-seconds"] + c["setup-seconds"]
                                                        for r in rows for c in r["clients"].values()])),
            "clients": {c: {k: [r["clients"][c][k] for r in rows] for k in ("down-floats", "down-bytes", "up-floats", "up-bytes")}
                        for c in rows[0]["clients"]}}


STARTUP = """
import sys, time
t0 = time.perf_counter()
import torch, flwr.app, flwr.clientapp
from llm_bridge.finetune import build_data, setup_torch
from llm_bridge.peft_layers import LoraLayers, add_lora
from llm_bridge.job import FinetuneJob
job = FinetuneJob(model="smollm2", examples_per_client=8, eval_per_family=2)
setup_torch(1)
t1 = time.perf_counter()
if sys.argv[1] == "gguf":
    import os
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from llm_bridge.models import _prepare, fetch_smollm2
    folder, name = os.path.split(fetch_smollm2())
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model, tok = _prepare(model, AutoTokenizer.from_pretrained(folder, gguf_file=name))
else:
    from llm_bridge.models import load_model
    model, tok = load_model("smollm2", dtype=torch.float32)
t2 = time.perf_counter()
layers = LoraLayers(add_lora(model, 16, 32.0, ["q_proj", "k_proj", "v_proj", "o_proj"]))
build_data(job, tok)
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def smollm2_part() -> dict:
    """A fresh process doing a ClientApp's work before training: imports, model, LoRA, data;
    the model from the converted cache ('after') or from the gguf ('before')."""
    from llm_bridge.models import smollm2_dir
    smollm2_dir()   # the cache exists for 'after'
    out = {}
    for mode in ("cache", "gguf"):
        done = subprocess.run([sys.executable, "-c", STARTUP, mode], capture_output=True, text=True,
                              env=dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1"))
        if done.returncode != 0:
            raise RuntimeError(f"start-up probe ({mode}) failed: {done.stderr.strip().splitlines()[-1:]}")
        imports, model, rest = (float(v) for v in done.stdout.split()[-3:])
        out[mode] = {"imports": imports, "model": model, "lora_and_data": rest, "total": imports + model + rest}
    return out


def run(args) -> int:
    from .flower_deploy import LocalDeployment
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = set(parts) - {"numpy", "bridge", "smollm2"}
    if unknown or not parts:
        raise ValueError(f"--parts must list some of numpy, bridge, smollm2; got {args.parts!r}")
    from fslora_ref.validation import MAX_RANK, check_int
    check_int("--clients", args.clients, low=1, high=16)      # budgets 2, 4, ..., 2^clients
    check_int("--rounds", args.rounds, low=1, high=1000)
    try:
        ranks = [check_int("--ranks", int(r), low=1, high=MAX_RANK) for r in args.ranks.split(",") if r.strip()]
    except ValueError as exc:
        raise ValueError(f"--ranks must be comma-separated integers in [1, {MAX_RANK}], got {args.ranks!r}") from exc
    if not ranks:
        raise ValueError(f"--ranks must name at least one rank, got {args.ranks!r}")
    if args.json is not None:   # checked, and locked for this process, before the deployments start
        from fslora_ref.outputs import check_output_file
        check_output_file(args.json, "--json")
    figures = {}
    with tempfile.TemporaryDirectory(prefix="fslora-flower-bench-") as tmp:
        if "numpy" in parts:
            with LocalDeployment(args.clients, os.path.join(tmp, "logs")) as dep:
                figures["numpy"] = numpy_part(dep, tmp, args.clients, args.rounds, ranks)
            print(report_numpy(figures["numpy"]), flush=True)
        if "bridge" in parts:
            figures["bridge"] = bridge_part(tmp)
            print(report_bridge(figures["bridge"]), flush=True)
        if "smollm2" in parts:
            figures["smollm2_startup"] = smollm2_part()
            print(report_smollm2(figures["smollm2_startup"]), flush=True)
    if args.json is not None:
        from fslora_ref.outputs import write_json
        write_json(args.json, figures)
    return 0


def report_numpy(f) -> str:
    lines = [f"NumPy least squares, m=48, n=32, budgets k_i = {f['budgets']}, FSLoRA, float64 on the wire"]
    for r, g in f["ranks"].items():
        lines.append(f"r={r}: loopback == in-process: history.json {'identical' if g['history_identical'] else 'DIFFERENT'}, "
                     f"final factors {'bit-identical' if g['factors_identical'] else 'DIFFERENT'}")
        lines.append(f"  {'client':>6} {'k_i':>4} {'down floats':>12} {'down bytes':>11} {'overhead':>9} "
                     f"{'up floats':>10} {'up bytes':>10} {'overhead':>9}   (per round, last round)")
        for c, row in g["clients"].items():
            df, db, uf, ub = row["down-floats"][-1], row["down-bytes"][-1], row["up-floats"][-1], row["up-bytes"][-1]
            lines.append(f"  {c:>6} {row['k']:>4} {df:>12,} {db:>11,} {db - 8 * df:>9,} {uf:>10,} {ub:>10,} {ub - 8 * uf:>9,}")
        t = g["superlink_traffic"]
        p = g["payload_bytes_all_rounds"]
        lines.append(f"  all rounds, to / from the nodes: message objects {p['down']:,} / {p['up']:,} B; SuperLink "
                     f"counters {t.get('outbound-bytes', 0):,} / {t.get('inbound-bytes', 0):,} B (these add discovery "
                     f"and the nodes' 3-s polls)")
        lines.append(f"  seconds per round: in-process {g['in_process_seconds_per_round']:.4f} (median), loopback "
                     f"{g['flower_seconds_per_round']:.2f} (engine overhead "
                     f"{g['flower_seconds_per_round'] - g['in_process_seconds_per_round']:.2f} s/round; each ClientApp process "
                     f"starts in {np.mean([c['process-seconds'] for c in g['clients'].values()]):.2f} s "
                     f"({np.mean([c['process-cpu-seconds'] for c in g['clients'].values()]):.2f} s CPU); discovery "
                     f"{g['discovery_seconds']:.1f} s once)")
    return "\n".join(lines)


def report_bridge(b) -> str:
    lines = [f"tiny Llama bridge (float32): loopback vs in-process max relative difference of the adapter "
             f"{b['max_relative_difference']:.1e} ({'bit-identical' if b['bit_identical'] else 'not bit-identical'})",
             f"  seconds per round: in-process {b['in_process_seconds_per_round']:.2f}, loopback "
             f"{b['flower_seconds_per_round']:.2f}; ClientApp start-up (process + imports + model + data) "
             f"{b['clientapp_startup_seconds']:.2f} s per round"]
    for c, row in b["clients"].items():
        lines.append(f"  client {c}: down {row['down-floats'][-1]:,} floats -> {row['down-bytes'][-1]:,} B, "
                     f"up {row['up-floats'][-1]:,} floats -> {row['up-bytes'][-1]:,} B")
    return "\n".join(lines)


def report_smollm2(s) -> str:
    c, g = s["cache"], s["gguf"]
    return (f"SmolLM2 ClientApp start-up in a fresh process (imports + model + LoRA + data): from the gguf "
            f"{g['total']:.1f} s (model {g['model']:.1f} s), from the converted cache {c['total']:.1f} s "
            f"(model {c['model']:.1f} s): {g['total'] / c['total']:.1f}x faster per round")
