"""Real Flower deployments on 127.0.0.1 (SuperLink + one SuperNode per client, separate
processes, HTTP): a loopback run equals the in-process run bit for bit, a SuperNode killed
mid-run is handled as documented, and every process started is gone afterwards.

Time limits here are hang guards only, generous enough for a heavily loaded 2-core machine:
start <= 300 s, run <= 900 s, stop <= 60 s (how fast a deployment is belongs to `fslora flower bench`).
"""
import json
import os
import threading
import time

import numpy as np
import pytest

from fslora_cli.main import main
from fslora_ref.algorithms import get_algorithm
from fslora_cli.simulate import build, run_identity
from fslora_ref.federation import checkpoint_path, load_checkpoint

from fslora_cli.flower_deploy import APP_DIR
from fslora_cli.flower_deploy import LocalDeployment, marked_processes
from fslora_cli.flower import run_config

from test_strategy import assert_same, simulate_args

pytestmark = pytest.mark.timeout(2400)
LIMITS = dict(start_timeout=300, stop_timeout=60)
RUN_TIMEOUT = 900
JOB = ["--clients", "3", "--budgets", "2,4,8", "--rank", "8", "--m", "12", "--n", "10", "--local-steps", "3",
       "--algorithms", "fslora", "--seed", "5"]


def final_state(out, name, args):
    """(server state, next round) from the checkpoint of the job ``args`` in ``out``."""
    problem, config, _ = build(args)
    state, _, next_round = load_checkpoint(checkpoint_path(out, name), name, config,
                                           identity=run_identity(args, problem))
    return state, next_round


def test_loopback_run_equals_in_process(tmp_path, capsys, deployments):
    ref, fl = str(tmp_path / "in_process"), str(tmp_path / "flower")
    assert main(["simulate", *JOB, "--rounds", "2", "--out", ref]) == 0
    code = main(["flower", "simulate", *JOB, "--rounds", "2", "--out", fl, "--round-timeout", "60",
                 "--start-timeout", str(LIMITS["start_timeout"]), "--run-timeout", str(RUN_TIMEOUT)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert len(deployments) == 1 and marked_processes(deployments[0].token) == []   # every started process is gone
    assert "SuperNodes up in" in out and "fslora " in out     # the summary table came back from the ServerApp
    with open(os.path.join(ref, "history.json"), "rb") as a, open(os.path.join(fl, "history.json"), "rb") as b:
        assert a.read() == b.read()                          # same schema, same numbers, same bytes
    args = simulate_args(**{"clients": 3, "budgets": "2,4,8", "rank": 8, "m": 12, "n": 10, "local_steps": 3,
                            "rounds": 2, "seed": 5, "lr": 0.01, "batch_size": 16, "algorithms": "fslora"})
    (s_ref, t_ref), (s_fl, t_fl) = final_state(ref, "fslora", args), final_state(fl, "fslora", args)
    assert t_ref == t_fl == 2
    assert_same(s_fl, s_ref)                                 # final factors bit-identical
    ledger = json.load(open(os.path.join(fl, "flower.json")))["runs"][-1]
    assert ledger["status"] == "completed" and len(ledger["rounds"]) == 2
    assert f"flower: run {ledger['run-id']} completed" in out     # the ledger entry is keyed by Flower's run id
    for row in ledger["rounds"]:
        assert row["missing"] == {}
        over = [c["down-bytes"] - 8 * c["down-floats"] for c in row["clients"].values()]
        assert max(over) - min(over) <= 16                   # k_i (m + n) floats + a constant


def run_in_thread(dep, rc):
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=dep.run(APP_DIR, rc, timeout=RUN_TIMEOUT)))
    thread.start()
    return thread, box


def kill_after_first_round(dep, out, node):
    """Wait (bounded) for round 1 in flower.json, then SIGKILL SuperNode ``node``'s group."""
    path, deadline = os.path.join(out, "flower.json"), time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        try:
            if json.load(open(path))["runs"][-1]["rounds"]:
                break
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.2)
    else:
        pytest.fail("round 1 never completed")
    dep.kill_node(node)


def flower_job(out, rounds, **settings):
    args = simulate_args(clients=3, budgets="2,4,8", rank=8, m=12, n=10, local_steps=3, rounds=rounds, seed=5,
                         lr=0.01, batch_size=16, algorithms="fslora", out=out)
    return args, run_config("simulate", args, out, **settings)


def reference(args, rounds, drop=None):
    """Server state after ``rounds`` in-process rounds; in the last one client ``drop`` is left
    out of the aggregation (what --on-missing continue does when it does not answer)."""
    problem, config, _ = build(args)
    algo = get_algorithm("fslora")
    state = algo.init(problem, config)
    for t in range(rounds):
        plans = [p for p in algo.configure_round(state, problem, config, t, config.participants(t))
                 if not (t == rounds - 1 and p.client == drop)]
        state = algo.aggregate(state, plans, [algo.client_update(p, problem, config, t) for p in plans], config)
    return state, config


def test_killed_supernode_stop_resume_and_continue(tmp_path):
    """One deployment, three runs: (a) --on-missing stop: SuperNode 2 is killed after round 1,
    the run fails with a one-line error naming client 2, round 1's checkpoint is kept; (b) a new
    SuperNode 2 joins and --resume finishes the job bit-identical to an uninterrupted run (the
    dead node, still registered, does not hold discovery up); (c) --on-missing continue:
    SuperNode 1 is killed after round 1 and round 2 averages over clients 0 and 2."""
    stopped, kept = str(tmp_path / "stop"), str(tmp_path / "continue")
    args, rc = flower_job(stopped, rounds=3, round_timeout=20, on_missing="stop")
    with LocalDeployment(3, str(tmp_path / "logs"), **LIMITS) as dep:
        # teeth for the "all gone" checks: the marker finds the SuperLink, the SuperNodes and their SuperExecs
        assert len(marked_processes(dep.token)) >= 1 + 3 * 2
        thread, box = run_in_thread(dep, rc)
        kill_after_first_round(dep, stopped, node=2)
        thread.join()
        failed = box["result"]
        assert failed.status == "finished:failed"
        assert "round 2/3: client 2 (node " in failed.details and "no reply within 20 s" in failed.details
        assert "\n" not in failed.details and "--resume" in failed.details
        assert final_state(stopped, "fslora", args)[1] == 1          # round 1 is kept
        ledger = json.load(open(os.path.join(stopped, "flower.json")))["runs"][-1]
        assert ledger["status"] == "failed" and "client 2" in ledger["error"]
        assert ledger["run-id"] == failed.run_id and ledger["exit-code"] == 1   # a missing client: not a user error

        dep.restart_node(2)
        args.resume = True
        resumed = dep.run(APP_DIR, run_config("simulate", args, stopped, round_timeout=60), timeout=RUN_TIMEOUT)
        assert resumed.ok, resumed.details
        expected, _ = reference(args, 3)
        assert_same(final_state(stopped, "fslora", args)[0], expected)
        runs = json.load(open(os.path.join(stopped, "flower.json")))["runs"]
        assert [r["status"] for r in runs] == ["failed", "completed"] and len(runs[1]["rounds"]) == 2

        args, rc = flower_job(kept, rounds=2, round_timeout=20, on_missing="continue")
        thread, box = run_in_thread(dep, rc)
        kill_after_first_round(dep, kept, node=1)
        thread.join()
        assert box["result"].ok, box["result"].details
        token = dep.token
    assert marked_processes(token) == []
    expected, _ = reference(args, 2, drop=1)
    assert_same(final_state(kept, "fslora", args)[0], expected)
    rounds = json.load(open(os.path.join(kept, "flower.json")))["runs"][-1]["rounds"]
    assert rounds[1]["missing"] == {"1": "no reply within 20 s"}
    hist = json.load(open(os.path.join(kept, "history.json")))["algorithms"]["fslora"]
    assert hist["per_client_upload"][1][1] == 0 and all(np.isfinite(hist["loss"]))
