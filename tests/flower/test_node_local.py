"""Node-local data and announced budgets: every SuperNode reads its own partition file (named in its
--node-config) and announces its rank budget k_i there; the server plans the rounds from the
announcements (the run config's own budgets are different) and the run equals the in-process run
with the same partition and budgets, bit for bit."""
import json
import os

import numpy as np
import pytest

from fslora_flower.settings import run_config
from fslora_ref.jobs import SimulateJob
from fslora_cli.flower_deploy import APP_DIR, LocalDeployment, marked_processes
from fslora_cli.main import main
from fslora_flower.numpy_client import prepare, train
from fslora_flower.partition import LocalPartition, load_partition, recipe_digest, write_partitions
from fslora_flower.discovery import announced, announced_budgets

from test_loopback import final_state
from test_strategy import assert_same, simulate_args

pytestmark = pytest.mark.timeout(400)
JOB = dict(clients=3, rank=8, m=12, n=10, local_steps=3, rounds=2, seed=5, lr=0.01, batch_size=16, algorithms="fslora")


def sim_job(**changes):
    return SimulateJob.from_dict(dict(JOB, **changes))


def test_a_partition_file_holds_one_client_and_trains_as_the_full_problem(tmp_path):
    from fslora_ref.algorithms import get_algorithm
    from fslora_ref.simulate import build
    args = sim_job(budgets="2,4,8")
    problem, config, _ = build(args)
    paths = write_partitions(args, str(tmp_path))
    algo = get_algorithm("fslora")
    plans = algo.configure_round(algo.init(problem, config), problem, config, 0, [0, 1, 2])
    for plan, path in zip(plans, paths):
        local = load_partition(path, plan.client, recipe_digest(args))
        assert isinstance(local, LocalPartition) and local._problem.n_clients == 1
        ref = algo.client_update(plan, problem, config, 0)
        got = algo.client_update(plan, local, config, 0)
        assert all(np.array_equal(x, y) for a, b in zip(got.deltas, ref.deltas) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="holds client 0, but this node is partition-id 1"):
        load_partition(paths[0], 1, recipe_digest(args))
    with pytest.raises(ValueError, match="made for another job"):
        load_partition(paths[0], 0, recipe_digest(sim_job(seed=6)))
    with pytest.raises(ValueError, match="holds the data of client 0, not of client 2"):
        load_partition(paths[0], 0, recipe_digest(args)).sample_batch(2, np.random.default_rng(0))


def test_announcements_are_checked_and_named():
    assert announced({"budget": 4, "device": "cpu", "partition-id": 0}) == {"budget": 4, "device": "cpu"}
    with pytest.raises(ValueError, match="budget=0 must be an integer >= 1"):
        announced({"budget": 0})
    nodes = {0: 10, 1: 11}
    assert announced_budgets({0: {}, 1: {}}, nodes, 8) is None
    assert announced_budgets({0: {"budget": 2}, 1: {"budget": 8}}, nodes, 8) == [2, 8]
    with pytest.raises(ValueError, match=r"partition-id 1 \(node 11\) announced no budget"):
        announced_budgets({0: {"budget": 2}, 1: {}}, nodes, 8)
    with pytest.raises(ValueError, match=r"partition-id 0 \(node 10\) announced budget=9, above the rank r = 8"):
        announced_budgets({0: {"budget": 9}, 1: {"budget": 2}}, nodes, 8)


def test_loopback_with_node_local_data_and_announced_budgets_equals_in_process(tmp_path, capsys):
    ref, fl, data = str(tmp_path / "in_process"), str(tmp_path / "flower"), str(tmp_path / "data")
    budgets = [2, 4, 8]
    cli = ["--clients", "3", "--rank", "8", "--m", "12", "--n", "10", "--local-steps", "3", "--rounds", "2",
           "--seed", "5", "--lr", "0.01", "--batch-size", "16", "--algorithms", "fslora"]
    assert main(["simulate", *cli, "--budgets", ",".join(map(str, budgets)), "--out", ref]) == 0
    job = sim_job(ratios="0.125", rounds=1, lr=0.5)   # budgets 1,1,1; rounds and lr set by typed keys below
    paths = write_partitions(job, data)
    configs = [f'budget={k} data="{p}" device="cpu"' for k, p in zip(budgets, paths)]
    os.makedirs(fl)
    with LocalDeployment(3, str(tmp_path / "logs"), start_timeout=90, stop_timeout=15, node_configs=configs) as dep:
        rc = dict(run_config("simulate", job, fl, round_timeout=60), **{"num-server-rounds": 2, "fslora.lr": 0.01})
        result = dep.run(APP_DIR, rc, timeout=300)
        token = dep.token
    assert result.ok, result.details
    assert marked_processes(token) == []
    ledger = json.load(open(os.path.join(fl, "flower.json")))["runs"][-1]
    assert {c: a["budget"] for c, a in ledger["announced"].items()} == {"0": 2, "1": 4, "2": 8}
    assert ledger["announced"]["0"]["device"] == "cpu"
    args = simulate_args(**JOB, budgets="2,4,8")
    (s_ref, t_ref), (s_fl, t_fl) = final_state(ref, "fslora", args), final_state(fl, "fslora", args)
    assert t_ref == t_fl == 2
    assert_same(s_fl, s_ref)
    with open(os.path.join(ref, "history.json"), "rb") as a, open(os.path.join(fl, "history.json"), "rb") as b:
        assert a.read() == b.read()


@pytest.mark.timeout(900)   # hang guard: on a loaded machine the command may start Ray more than once
def test_simulation_engine_run_equals_in_process(tmp_path, capsys):
    """`fslora flower simulate --engine simulation`: Flower's simulation engine (Ray), 4 virtual
    SuperNodes, each training on its own partition; history.json byte-identical to the in-process run.
    (If Ray's node misses its start-up window on a loaded machine, the command runs the job again.)"""
    pytest.importorskip("ray")
    ref, fl = str(tmp_path / "in_process"), str(tmp_path / "flower")
    cli = ["--clients", "4", "--budgets", "1,2,4,8", "--rank", "8", "--m", "12", "--n", "10", "--local-steps", "3",
           "--rounds", "2", "--seed", "5", "--algorithms", "fslora"]
    assert main(["simulate", *cli, "--out", ref]) == 0
    code = main(["flower", "simulate", *cli, "--engine", "simulation", "--out", fl, "--start-timeout", "300",
                 "--run-timeout", "800"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "4 virtual SuperNodes" in out
    with open(os.path.join(ref, "history.json"), "rb") as a, open(os.path.join(fl, "history.json"), "rb") as b:
        assert a.read() == b.read()
    ledger = json.load(open(os.path.join(fl, "flower.json")))["runs"][-1]
    assert ledger["status"] == "completed" and len(ledger["rounds"]) == 2
    # Flower's runtime ran on the head the launcher started (fslora_cli/ray_head.py), not on a node of its own
    kept = os.listdir(os.path.join(fl, "flower-logs", "ray-session"))
    assert "raylet.out" in kept and any(n.startswith("python-core-driver-") for n in kept), kept


def test_the_partition_command_writes_one_file_per_client(tmp_path, capsys):
    out = tmp_path / "parts"
    assert main(["flower", "partition", "--clients", "3", "--budgets", "2,4,8", "--rank", "8", "--m", "12",
                 "--n", "10", "--seed", "5", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "this job's k_i: 2,4,8" in said and "num-partitions=3" in said
    digest = recipe_digest(sim_job(budgets="2,4,8", batch_size=16))
    for i in range(3):
        assert load_partition(str(out / f"partition-{i}.npz"), i, digest).client == i


def test_node_local_is_refused_where_it_does_not_apply(tmp_path, capsys):
    assert main(["flower", "simulate", "--clients", "2", "--engine", "simulation", "--node-local",
                 "--out", str(tmp_path / "o")]) == 2
    assert "--node-local is for the deployment engine (--engine deployment)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
