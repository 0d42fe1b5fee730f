"""`fslora flower finetune` runs its rounds through Flower's ``Strategy.start`` (one strategy and one
``start`` per run), the server evaluating the adapter on its own held-out set in ``start``'s
``evaluate_fn`` (no EVALUATE message goes to the clients); history, checkpoint state and adapter
equal `fslora finetune` in process, and so does a run interrupted after round 1 and resumed.
InProcessGrid: the real ClientApp and Flower's serialisation, no Flower processes (tiny random Llama)."""
import json
import os

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from fslora_cli.flower import job_parser, run_config
from fslora_cli.main import main
from fslora_flower import server_app, start_run, strategy as strategy_mod

from inprocess import InProcessGrid

pytest.importorskip("torch")
pytest.importorskip("peft")
pytestmark = pytest.mark.timeout(1800)   # hang guard for a loaded machine, not a speed target

# eval every 2 rounds of 3: the held-out evaluations are rows 0, 2 and 3 (the recorder's schedule)
JOB = ["--model", "tiny", "--rank", "8", "--lora-alpha", "16", "--clients", "2", "--budgets", "2,4", "--rounds", "3",
       "--local-steps", "2", "--batch-size", "2", "--lr", "0.02", "--examples-per-client", "8", "--eval-per-family",
       "3", "--eval-every", "2", "--threads", "1", "--no-verify-adapter", "--device", "cpu", "--seed", "3"]


def serve(argv, out):
    args = job_parser("finetune").parse_args([*argv, "--out", out])
    rc = run_config("finetune", args, out, discovery_timeout=60.0, round_timeout=300.0)
    grid = InProcessGrid(rc, 2)
    server_app.main(grid, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=rc))
    return grid


def without_timings(x):
    if isinstance(x, dict):
        return {k: without_timings(v) for k, v in x.items() if "seconds" not in k and k != "path"}
    if isinstance(x, list):
        return [without_timings(v) for v in x]
    return x


def assert_same_run(ref, fl):
    from safetensors.numpy import load_file

    from fslora_ref.checkpoint_format import read_archive
    a, b = (json.loads(open(os.path.join(d, "history.json")).read()) for d in (ref, fl))
    assert [e["round"] for e in b["eval"]] == [0, 2, 3]
    assert without_timings(a) == without_timings(b)      # every loss, evaluation and byte count
    sa, sb = (read_archive(os.path.join(d, "checkpoint-fslora.npz"))[1]["state"]["layers"] for d in (ref, fl))
    assert len(sa) == len(sb) and all(np.array_equal(x, y) for p, q in zip(sa, sb) for x, y in zip(p, q))
    wa, wb = (load_file(os.path.join(d, "adapter", "adapter_model.safetensors")) for d in (ref, fl))
    assert wa.keys() == wb.keys() and any(np.linalg.norm(x) > 0 for x in wa.values())
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


def bypassing_start(self, algorithm, problem, config, **kw):
    """Mutant: what the ServerApp did before, the bridge's own loop with a hand-written send and
    receive per round (one strategy, kept), never ``Strategy.start``."""
    from flwr.app import ArrayRecord, ConfigRecord

    from fslora_flower.exchange import exchange
    from fslora_ref.federation import run
    strategy = strategy_mod.FSLoRAStrategy(algorithm, problem, config, self.nodes, ledger=self.ledger, **self.options)

    def round_fn(algorithm, state, problem, config, t):
        strategy.state = state
        messages = strategy.configure_train(t + 1, ArrayRecord(), ConfigRecord(), None)
        replies, strategy.refused = exchange(self.grid.grid, messages, self.timeout, self.grid.poll)
        strategy.aggregate_train(t + 1, replies)
        plans, uploads, _ = strategy.last
        return strategy.state, plans, uploads
    kw["round_fn"] = round_fn
    return run(algorithm, problem, config, **kw)


def watch_strategies(monkeypatch):
    """Count the strategies made, each ``start`` and each call of its ``evaluate_fn``."""
    made, started, evaluated = [], [], []
    init, start = strategy_mod.FSLoRAStrategy.__init__, strategy_mod.FSLoRAStrategy.start

    def count_init(self, *a, **k):
        made.append(a[0].name)
        return init(self, *a, **k)

    def count_start(self, grid, arrays, num_rounds=3, evaluate_fn=None, **k):
        started.append((self.algorithm.name, num_rounds))

        def counted(server_round, arrays):
            evaluated.append(server_round)
            return evaluate_fn(server_round, arrays)
        return start(self, grid, arrays, num_rounds=num_rounds, evaluate_fn=counted if evaluate_fn else None, **k)
    monkeypatch.setattr(strategy_mod.FSLoRAStrategy, "__init__", count_init)
    monkeypatch.setattr(strategy_mod.FSLoRAStrategy, "start", count_start)
    return made, started, evaluated


@pytest.mark.parametrize("mutant", [False, True], ids=["strategy-start", "mutant-bypassing-start"])
def test_strategy_start_drives_the_finetune_rounds_and_evaluate_fn_evaluates(tmp_path, capsys, monkeypatch, mutant):
    """One strategy, one ``start(num_rounds=3)``; ``evaluate_fn`` is called before round 1 and after
    each round, and only the train messages go to the clients. Teeth: the mutant that runs the
    same rounds by hand (the run is just as equal: only the counts tell) is caught."""
    ref, fl = str(tmp_path / "in_process"), str(tmp_path / "flower")
    assert main(["finetune", *JOB, "--out", ref]) == 0
    if mutant:
        monkeypatch.setattr(start_run.FlowerRun, "__call__", bypassing_start)
    made, started, evaluated = watch_strategies(monkeypatch)
    grid = serve(JOB, fl)
    assert_same_run(ref, fl)
    assert made == ["fslora"]
    assert (started == [("fslora", 3)] and evaluated == [0, 1, 2, 3]) is not mutant
    kinds = [m.metadata.message_type for m in grid.sent]
    assert set(kinds) == {"query", "train"} and kinds.count("train") == 3 * 2
    rounds = json.loads(open(os.path.join(fl, "flower.json")).read())["runs"][-1]["rounds"]
    assert [r["round"] for r in rounds] == [1, 2, 3] and all("error" not in r for r in rounds)


def test_an_interrupted_finetune_resumes_through_strategy_start(tmp_path, capsys, monkeypatch):
    """Stopped after round 1 (checkpoint), resumed: ``start`` runs the 2 rounds left from the
    checkpoint's round, and the run equals the uninterrupted in-process one."""
    ref, fl = str(tmp_path / "in_process"), str(tmp_path / "flower")
    assert main(["finetune", *JOB, "--out", ref]) == 0
    made, started, evaluated = watch_strategies(monkeypatch)
    serve([*JOB, "--stop-after", "1"], fl)
    assert started == [("fslora", 1)] and evaluated == [0, 1]
    assert [e["round"] for e in json.loads(open(os.path.join(fl, "history.json")).read())["eval"]] == [0]
    serve([*JOB, "--resume"], fl)
    assert started == [("fslora", 1), ("fslora", 2)] and evaluated == [0, 1, 0, 1, 2]
    assert_same_run(ref, fl)
    runs = json.loads(open(os.path.join(fl, "flower.json")).read())["runs"]
    assert [[r["round"] for r in run["rounds"]] for run in runs] == [[1], [2, 3]]


class Poisoning(InProcessGrid):
    """Client 1's training reply of round 2 carries a NaN in its first upload array."""

    def push_messages(self, messages):
        ids = super().push_messages(messages)
        from fslora_flower import records
        for message, mid in zip(messages, ids):
            reply = self.replies.get(mid)
            if (message.metadata.dst_node_id == 1001 and message.metadata.message_type == "train"
                    and message.metadata.group_id.endswith("/2") and reply is not None and reply.has_content()):
                arrays = reply.content[records.UPLOAD]
                name = sorted(arrays)[0]
                poisoned = arrays[name].numpy().copy()
                poisoned.flat[0] = np.nan
                arrays[name] = records.Array(np.ascontiguousarray(poisoned))
        return ids


@pytest.mark.parametrize("policy", ["stop", "drop"])
def test_a_poisoned_finetune_update_is_refused_naming_the_client(tmp_path, capsys, policy):
    """--on-bad-update reaches the finetune strategy: ``stop`` ends the run before aggregating round 2
    (round 1 kept, the ledger says why, exit code 1); ``drop`` finishes without client 1 in round 2."""
    from fslora_flower.strategy import RefusedUpdate
    fl = str(tmp_path / "flower")
    args = job_parser("finetune").parse_args([*JOB, "--out", fl])
    rc = run_config("finetune", args, fl, discovery_timeout=60.0, round_timeout=300.0, on_bad_update=policy)
    grid = Poisoning(rc, 2)
    context = Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=rc)
    ledger = lambda: json.loads(open(os.path.join(fl, "flower.json")).read())["runs"][-1]   # noqa: E731
    if policy == "stop":
        with pytest.raises(RefusedUpdate, match=r"round 2/3: update refused: client 1: upload .* NaN value"):
            server_app.main(grid, context)
        assert ledger()["status"] == "failed" and ledger()["exit-code"] == 1
        assert [r["round"] for r in ledger()["rounds"]] == [1, 2] and "client 1" in ledger()["rounds"][1]["error"]
        assert len(json.loads(open(os.path.join(fl, "history.json")).read())["rounds"]) == 1
    else:
        server_app.main(grid, context)
        history = json.loads(open(os.path.join(fl, "history.json")).read())
        assert [[c["client"] for c in r["clients"]] for r in history["rounds"]] == [[0, 1], [0], [0, 1]]
        assert ledger()["status"] == "completed" and "dropped" in ledger()["rounds"][1]["missing"]["1"]
