"""The ServerApp's pieces in process: partition-id discovery, and the reference's run_all with
FlowerSimulation as its run_fn (history, ledger, missing and gone clients, divergence) — no Flower
processes."""
import json

import numpy as np
import pytest

from fslora_cli.simulate import build, run_all
from fslora_ref.client import DivergenceError

from fslora_flower.discovery import discover
from fslora_flower.rounds import Ledger
from fslora_cli.flower import run_config
from fslora_flower.strategy import MissingClients

from inprocess import InProcessGrid
from test_strategy import simulate_args


def grid_for(args, **kw):
    return InProcessGrid(run_config("simulate", args, "unused"), args.clients, **kw)


def test_discovery_maps_partitions_to_nodes():
    args = simulate_args()
    assert discover(grid_for(args, first=7), 4, timeout=5, poll=0.01) == {i: 1007 + i for i in range(4)}


def test_discovery_ignores_a_stale_node_once_every_partition_answered():
    args = simulate_args()
    grid = grid_for(args)
    stale = InProcessGrid(run_config("simulate", args, "unused"), 1, silent={1100}, first=100)
    grid.contexts.update(stale.contexts)           # a dead node that is still registered
    grid.silent |= stale.silent
    assert discover(grid, 4, timeout=5, poll=0.01) == {i: 1000 + i for i in range(4)}


def test_discovery_errors_name_the_problem():
    args = simulate_args()
    grid = grid_for(args, node_config={2: {"partition-id": 1}})
    with pytest.raises(ValueError, match=r"partition-id 1 is claimed by two nodes \(1001 and 1002\)"):
        discover(grid, 4, timeout=5, poll=0.01)
    with pytest.raises(MissingClients, match=r"no SuperNode answered for partition-id \[3\].*no answer from \[1003\]"):
        discover(grid_for(args, silent={1003}), 4, timeout=0.2, poll=0.01)
    absent = grid_for(args)
    del absent.contexts[1003]                      # node 3 never started
    with pytest.raises(MissingClients, match=r"partition-id \[3\] within 0.2 s \(3 node\(s\) connected; no answer from none"):
        discover(absent, 4, timeout=0.2, poll=0.01)
    with pytest.raises(ValueError, match="num-partitions=4, but the job has 5 clients"):
        discover(grid_for(args), 5, timeout=5, poll=0.01)


def flower_run_all(args, grid, nodes, **options):
    """The reference's run_all with FlowerSimulation as its run_fn (Strategy.start per algorithm), on a
    server view of the job's problem (the clients' digests, no data)."""
    from fslora_cli.simulate import job_from_args
    from fslora_flower.server_problem import ServerProblem
    from fslora_flower.simulate_run import FlowerSimulation
    from fslora_ref.checkpoint import client_data_digest
    from fslora_ref.simulate import run_all as reference_run_all
    problem, config, names = build(args)
    server = ServerProblem(problem.name, problem.link, problem.base_weights, problem.client_sizes,
                           [client_data_digest(c) for c in problem.clients], problem.batch_size)
    return reference_run_all(job_from_args(args), server, config, names, args.out, progress=False,
                             run_fn=FlowerSimulation(grid, nodes, **options))


def test_run_loop_through_flower_equals_in_process(tmp_path):
    args = simulate_args(algorithms="fslora,hetlora", rounds=3, out=str(tmp_path / "ref"))
    problem, config, names = build(args)
    ref = run_all(args, problem, config, names)
    args.out = str(tmp_path / "fl")
    got = flower_run_all(args, grid_for(args), {i: 1000 + i for i in range(4)}, timeout=5, poll=0.01,
                         ledger=Ledger(str(tmp_path)))
    for name in names:
        assert json.dumps(got[name].to_json()) == json.dumps(ref[name].to_json())
    saved = json.loads((tmp_path / "flower.json").read_text())["runs"][-1]["rounds"]
    assert [(r["algorithm"], r["round"]) for r in saved] == [(n, t) for n in names for t in (1, 2, 3)]
    for r in saved:
        assert r["missing"] == {} and set(r["clients"]) == {"0", "1", "2", "3"}
        assert all(c["up-floats"] == c["down-floats"] and c["down-bytes"] > 8 * c["down-floats"]
                   for c in r["clients"].values())
        assert all(c["process-seconds"] >= 0 and c["handler-seconds"] > 0 for c in r["clients"].values())


class SilentInTraining(InProcessGrid):
    """Node 1001 answers evaluations (row 0) but never a training message."""

    def push_messages(self, messages):
        messages = list(messages)
        self.silent = {1001} if any(m.metadata.message_type == "train" for m in messages) else set()
        return super().push_messages(messages)


def test_a_missing_client_is_in_the_ledger_before_the_error(tmp_path):
    args = simulate_args(out=str(tmp_path))
    grid = SilentInTraining(run_config("simulate", args, "unused"), args.clients)
    with pytest.raises(MissingClients, match=r"client 1 \(node 1001\): no reply within 0.1 s"):
        flower_run_all(args, grid, {i: 1000 + i for i in range(4)}, timeout=0.1, poll=0.01, ledger=Ledger(str(tmp_path)))
    row = json.loads((tmp_path / "flower.json").read_text())["runs"][-1]["rounds"][0]
    assert "client 1" in row["error"] and "up-bytes" not in row["clients"]["1"]
    assert np.isfinite(row["seconds"])


@pytest.mark.timeout(600)
def test_a_node_the_superlink_no_longer_lists_is_named_without_waiting(tmp_path, capsys):
    args = simulate_args(algorithms="fslora", out=str(tmp_path / "o"))
    nodes = {0: 1000, 1: 1001, 2: 4242, 3: 1003}            # node 4242 is gone: the push is refused
    # a reply timeout of a day: waiting for the gone node instead of naming it would trip the
    # hang guard (pytest-timeout), not a timed assertion
    flower_run_all(args, grid_for(args), nodes, timeout=86_400, poll=0.01, on_missing="continue",
                   ledger=Ledger(str(tmp_path)))
    rows = json.loads((tmp_path / "flower.json").read_text())["runs"][-1]["rounds"]
    assert [sorted(c for c, v in r["clients"].items() if "up-floats" in v) for r in rows] == [["0", "1", "3"]] * 2
    assert all(r["missing"] == {"2": "node gone (the SuperLink no longer lists it)"} for r in rows)
    assert all(set(r["evaluate-missing"]) == {"2"} for r in rows)


@pytest.mark.parametrize("changes", [dict(lr=1.0, local_steps=1, rounds=4),
                                     dict(server_optimizer="sgd", server_lr=1e4, rounds=3),
                                     dict(lr=3.0, local_steps=1, rounds=3, algorithms="fedit")])
def test_divergence_is_caught_and_named_as_in_process(tmp_path, changes):
    """The run loop's early divergence check sees the same round, client and option to change
    whether the clients trained in process or on nodes (which upload only their change)."""
    args = simulate_args(out=str(tmp_path / "ref"), **changes)
    problem, config, names = build(args)
    with pytest.raises(DivergenceError) as in_process:
        run_all(args, problem, config, names)
    args.out = str(tmp_path / "fl")
    with pytest.raises(DivergenceError) as over_flower:
        flower_run_all(args, grid_for(args), {i: 1000 + i for i in range(4)}, timeout=5, poll=0.01)
    assert str(over_flower.value) == str(in_process.value)
    assert "diverged in round" in str(in_process.value)
