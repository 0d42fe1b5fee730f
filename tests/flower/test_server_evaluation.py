"""The ServerApp holds no client data and evaluates through Flower (InProcessGrid: the real ClientApp
and Flower's serialisation, no Flower processes): Strategy.start drives the rounds with one strategy
per algorithm, the clients evaluate the global model on their own partition, and history.json and
the checkpoints are the in-process run's, byte for byte (fresh, resumed, every algorithm)."""
import json
import os

import pytest
from flwr.app import Context, RecordDict

from fslora_cli.flower import job_parser, run_config
from fslora_cli.main import main
from fslora_flower import server_app, server_problem as server_problem_mod, strategy as strategy_mod
from fslora_flower.evaluation import reduce_row
from fslora_flower.partition import write_partitions
from fslora_ref.algorithms import get_algorithm
from fslora_ref.client import DivergenceError
from fslora_ref.jobs import SimulateJob
from fslora_ref.problems import base as problem_base

from inprocess import InProcessGrid

pytestmark = pytest.mark.timeout(900)
JOB = ["--clients", "3", "--budgets", "2,4,8", "--rank", "8", "--m", "12", "--n", "10", "--local-steps", "3",
       "--seed", "5", "--batch-size", "4"]


def serve(argv, n_clients, node_config=None, grid_cls=InProcessGrid, **settings):
    args = job_parser("simulate").parse_args(argv)
    rc = run_config("simulate", args, args.out, discovery_timeout=30.0, round_timeout=60.0, **settings)
    grid = grid_cls(rc, n_clients, node_config=node_config)
    server_app.main(grid, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=rc))
    return grid


def read(path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def same_outputs(ref, got, names):
    assert read(os.path.join(ref, "history.json")) == read(os.path.join(got, "history.json"))
    for name in names:
        assert read(os.path.join(ref, f"checkpoint-{name}.npz")) == read(os.path.join(got, f"checkpoint-{name}.npz"))


@pytest.mark.parametrize("changes", [["--algorithms", "fslora,fedit,hetlora,flexlora,flora", "--rounds", "2"],
                                     ["--algorithms", "fslora", "--family", "two_layer", "--rounds", "2",
                                      "--client-fraction", "0.67", "--server-optimizer", "adam", "--server-lr", "0.1"],
                                     ["--algorithms", "fslora,flexlora", "--family", "logistic", "--rounds", "2",
                                      "--flexlora-weighting", "data_size"]],
                         ids=["all-algorithms", "two-layer-sampling-adam", "logistic-data-size"])
def test_history_and_checkpoints_equal_in_process(tmp_path, capsys, changes):
    ref, got = str(tmp_path / "ref"), str(tmp_path / "flower")
    assert main(["simulate", *JOB, *changes, "--out", ref]) == 0
    serve([*JOB, *changes, "--out", got], 3)
    names = job_parser("simulate").parse_args([*JOB, *changes]).algorithms.split(",")
    same_outputs(ref, got, names)
    ledger = json.loads(read(os.path.join(got, "flower.json")))["runs"][-1]
    assert ledger["status"] == "completed"
    assert all(r["evaluate-down-bytes"] > 0 and r["evaluate-up-bytes"] > 0 for r in ledger["rounds"])


def test_resumed_run_equals_uninterrupted_in_process(tmp_path, capsys):
    ref, got = str(tmp_path / "ref"), str(tmp_path / "flower")
    argv = [*JOB, "--algorithms", "fslora,hetlora"]
    assert main(["simulate", *argv, "--rounds", "3", "--out", ref]) == 0
    serve([*argv, "--rounds", "1", "--out", got], 3)
    serve([*argv, "--rounds", "3", "--resume", "--out", got], 3)     # Strategy.start from round 2
    same_outputs(ref, got, ["fslora", "hetlora"])
    runs = json.loads(read(os.path.join(got, "flower.json")))["runs"]
    assert [[r["round"] for r in run["rounds"]] for run in runs] == [[1, 1], [2, 3, 2, 3]]


class Watched(InProcessGrid):
    """Marks when a ClientApp handler runs, so a Problem built outside one is the server's."""

    in_client = False

    def push_messages(self, messages):
        Watched.in_client = True
        try:
            return super().push_messages(messages)
        finally:
            Watched.in_client = False


@pytest.mark.parametrize("mutant", [False, True], ids=["server-app", "mutant-that-builds-the-data"])
def test_the_server_never_builds_or_reads_client_data(tmp_path, capsys, monkeypatch, mutant):
    """Every Problem (the only holder of samples) and every partition file read happen inside a
    ClientApp handler; the server's problem has no ``clients`` at all. Teeth: a server that builds
    the job's problem itself, as it did before, is caught."""
    data = tmp_path / "nodes"
    write_partitions(SimulateJob.from_dict(dict(clients=3, rank=8, m=12, n=10, seed=5, batch_size=4)), str(data))
    node_config = {i: {"data": str(data / f"partition-{i}.npz")} for i in range(3)}
    outside = []
    original = problem_base.Problem.__post_init__

    def watched(self):
        if not Watched.in_client:
            outside.append(self.name)
        return original(self)
    monkeypatch.setattr(problem_base.Problem, "__post_init__", watched)
    seen = []
    real = server_problem_mod.server_problem

    def spy(job, answers, nodes):
        problem = real(job, answers, nodes)
        seen.append(problem)
        if mutant:      # what the ServerApp did before: rebuild every client's data to evaluate
            from fslora_ref.simulate import build
            build(job)
        return problem
    monkeypatch.setattr(server_problem_mod, "server_problem", spy)
    serve([*JOB, "--algorithms", "fslora,flora", "--rounds", "2", "--out", str(tmp_path / "o")], 3,
          node_config=node_config, grid_cls=Watched)
    assert (outside != []) is mutant
    assert len(seen) == 1 and not hasattr(seen[0], "clients")
    assert seen[0].client_sizes == [int(v) for v in json.loads(read(str(tmp_path / "o" / "history.json")))[
        "config"]["client_sizes"]]


def test_strategy_start_drives_the_rounds_one_strategy_per_algorithm(tmp_path, capsys, monkeypatch):
    made, started = [], []
    init, start = strategy_mod.FSLoRAStrategy.__init__, strategy_mod.FSLoRAStrategy.start

    def count_init(self, *a, **k):
        made.append(a[0].name)
        return init(self, *a, **k)

    def count_start(self, grid, arrays, num_rounds=3, **k):
        started.append((self.algorithm.name, num_rounds))
        return start(self, grid, arrays, num_rounds=num_rounds, **k)
    monkeypatch.setattr(strategy_mod.FSLoRAStrategy, "__init__", count_init)
    monkeypatch.setattr(strategy_mod.FSLoRAStrategy, "start", count_start)
    serve([*JOB, "--algorithms", "fslora,fedit", "--rounds", "3", "--out", str(tmp_path / "o")], 3)
    assert made == ["fslora", "fedit"] and started == [("fslora", 3), ("fedit", 3)]


@pytest.mark.parametrize("changes", [dict(lr=1.0, local_steps=1, rounds=4),
                                     dict(server_optimizer="sgd", server_lr=1e4, rounds=3)])
def test_divergence_is_named_as_in_process(tmp_path, capsys, changes):
    """The divergence check sees the same round and client, the client's losses asked of its node."""
    argv = [*JOB, "--algorithms", "fslora"] + [x for k, v in changes.items()
                                               for x in (f"--{k.replace('_', '-')}", str(v))]
    assert main(["simulate", *argv, "--out", str(tmp_path / "ref")]) == 2
    expected = capsys.readouterr().err.strip().split("error: ", 1)[1]
    with pytest.raises(DivergenceError) as err:
        serve([*argv, "--out", str(tmp_path / "fl")], 3)
    assert str(err.value) == expected and "diverged in round" in expected


def test_reduction_sums_in_client_order_whatever_order_replies_came():
    """The clients' gradients are summed in client order (not arrival order), left to right, as
    ``fslora_ref.recorder.evaluate`` does."""
    import numpy as np
    from fslora_ref.recorder import ClientEvaluation
    rng = np.random.default_rng(0)
    parts = {c: (ClientEvaluation(float(rng.random()), [rng.standard_normal((5, 4)) * 10.0 ** c]), None)
             for c in (3, 1, 0, 2)}
    row = reduce_row(parts, get_algorithm("flora"))
    assert row["loss"] == float(np.mean([parts[c][0].loss for c in range(4)]))
    g = [parts[c][0].weight_grads[0] for c in range(4)]
    expected = (((g[0] + g[1]) + g[2]) + g[3]) / 4
    assert row["grad_norm_weights"] == float(np.sqrt(np.sum(expected * expected)))


def test_a_server_side_held_out_set_is_evaluated_by_strategy_starts_evaluate_fn(tmp_path, capsys):
    """`--server-eval-data`: Strategy.start's evaluate_fn evaluates the global model on the server's
    own held-out file before round 1 and after each round (flower.json), equal to the same loss of
    the in-process run's states; history.json stays the in-process one. Another job's file is refused."""
    import numpy as np
    from fslora_flower.partition import load_held_out, write_held_out
    from fslora_ref.federation import algorithm_identity, load_checkpoint
    from fslora_ref.simulate import build, run_identity
    ref, got = str(tmp_path / "ref"), str(tmp_path / "flower")
    argv = [*JOB, "--algorithms", "fslora,flora", "--rounds", "2"]
    assert main(["simulate", *argv, "--out", ref]) == 0
    job = SimulateJob.from_dict(dict(clients=3, rank=8, budgets="2,4,8", m=12, n=10, seed=5, batch_size=4,
                                     local_steps=3, rounds=2, algorithms="fslora,flora"))
    held_path = write_held_out(job, str(tmp_path / "held-out.npz"), 7)
    serve([*argv, "--out", got], 3, server_eval_data=held_path)
    same_outputs(ref, got, ["fslora", "flora"])
    problem, config, _ = build(job)
    held = load_held_out(held_path, job, problem.base_weights)
    assert held.client_sizes == [21]
    evals = json.loads(read(os.path.join(got, "flower.json")))["runs"][-1]["server-eval"]
    for name in ("fslora", "flora"):
        algo = get_algorithm(name)
        assert sorted(evals[name]) == ["0", "1", "2"]
        initial = held.loss(0, algo.global_weights(algo.init(problem, config), problem, config))
        state, _, _ = load_checkpoint(os.path.join(ref, f"checkpoint-{name}.npz"), name, config,
                                      identity=dict(run_identity(job, problem), **algorithm_identity(algo)))
        final = held.loss(0, algo.global_weights(state, problem, config))
        assert evals[name]["0"] == initial and evals[name]["2"] == final and final != initial
    other = write_held_out(SimulateJob.from_dict(dict(job.to_dict(), seed=6)), str(tmp_path / "other.npz"), 7)
    with pytest.raises(ValueError, match="other.npz was made for another job"):
        serve([*argv, "--out", str(tmp_path / "o2")], 3, server_eval_data=other)


def test_the_partition_command_writes_the_held_out_file(tmp_path, capsys):
    from fslora_flower.partition import load_held_out
    from fslora_ref.problems.families import base_model
    out = tmp_path / "parts"
    cli = ["flower", "partition", "--clients", "3", "--budgets", "2,4,8", "--rank", "8", "--m", "12", "--n", "10",
           "--seed", "5"]
    assert main([*cli, "--held-out", "-1", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--held-out must be an integer >= 0, got -1") and "\n" not in err and not out.exists()
    assert main([*cli, "--held-out", "4", "--out", str(out)]) == 0
    assert f"--server-eval-data {out / 'held-out.npz'}" in capsys.readouterr().out
    job = SimulateJob.from_dict(dict(clients=3, budgets="2,4,8", rank=8, m=12, n=10, seed=5))
    held = load_held_out(str(out / "held-out.npz"), job, base_model("least_squares", seed=5, m=12, n=10)[1])
    assert held.client_sizes == [12]
