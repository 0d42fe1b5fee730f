"""Node-local data for `fslora flower finetune`: every SuperNode reads only its own partition file
(named in its --node-config) and announces its budget k_i; the server plans from the announcements,
never opens --train-json (the tests move those files away before the run) and the run equals
`fslora finetune --budgets <the announced k_i>` in process, bit for bit (tiny random Llama)."""
import json
import os

import numpy as np
import pytest

from fslora_cli.main import main

pytest.importorskip("torch")
pytest.importorskip("peft")
pytestmark = pytest.mark.timeout(1800)   # hang guard for a loaded machine, not a speed target

BUDGETS = [2, 4, 8]
# the job the run config carries: its own budgets are 1,1,1 (ratios 0.125 of r = 8); the nodes announce 2,4,8
TINY = ["--model", "tiny", "--rank", "8", "--lora-alpha", "16", "--clients", "3", "--rounds", "1", "--local-steps", "2",
        "--batch-size", "2", "--lr", "0.02", "--eval-per-family", "3", "--eval-every", "1", "--threads", "1",
        "--dirichlet-alpha", "50", "--no-verify-adapter", "--device", "cpu", "--seed", "3"]


def commonsense_data(root):
    """Two boolean families ("odd", "big") of commonsense records, train and held-out files; returns
    (train specs, eval specs)."""
    os.makedirs(root, exist_ok=True)

    def records(test, offset):
        rows = []
        for x in range(offset, offset + 24):
            truth = "true" if (x % 2 if test == "odd" else x > 50) else "false"
            rows.append({"instruction": f"Is {x} {test}? Say true or false.", "input": "",
                         "output": f"the answer is {truth}", "answer": truth})
        return rows
    specs = {"train": [], "eval": []}
    for split, offset in (("train", 30), ("eval", 70)):
        for family in ("odd", "big"):
            path = os.path.join(root, f"{family}-{split}.json")
            with open(path, "w") as fh:
                json.dump(records(family, offset), fh)
            specs[split].append(f"{family}={path}")
    return specs["train"], specs["eval"]


def finetune_args(train, evals, *extra):
    return [*TINY, "--train-json", *train, "--eval-json", *evals, *extra]


def job_of(argv):
    from fslora_cli.flower import job_args, job_parser, typed_job
    spec, _ = typed_job("finetune", job_args("finetune", job_parser("finetune").parse_args(argv)))
    return spec


def without_timings(x):
    """The history without wall-clock figures (and the node-local marker of its data section)."""
    if isinstance(x, dict):
        return {k: without_timings(v) for k, v in x.items() if "seconds" not in k and k != "node_local"}
    if isinstance(x, list):
        return [without_timings(v) for v in x]
    return x


def assert_same_run(ref, fl):
    from safetensors.numpy import load_file
    a, b = (json.loads(open(os.path.join(d, "history.json")).read()) for d in (ref, fl))
    assert b["data"]["node_local"] is True and "node_local" not in a["data"]
    assert b["data"]["files"]["train"] == [] and len(a["data"]["files"]["train"]) == 2   # the server saw no train file
    a["data"]["files"]["train"] = []
    assert a["adapter"].pop("path") == os.path.join(ref, "adapter") and b["adapter"].pop("path") == os.path.join(fl, "adapter")
    assert [c["k"] for c in b["rounds"][0]["clients"]] == BUDGETS
    assert without_timings(a) == without_timings(b)      # every loss, evaluation, byte count and family count
    wa, wb = (load_file(os.path.join(d, "adapter", "adapter_model.safetensors")) for d in (ref, fl))
    assert wa.keys() == wb.keys() and any(np.linalg.norm(x) > 0 for x in wa.values())
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)


# -- the partition files -------------------------------------------------------------------------
def test_partition_files_hold_the_in_process_split(tmp_path):
    from llm_bridge.finetune import client_examples
    from llm_bridge.node_data import load_partition_file, recipe_digest, write_partition_files
    train, evals = commonsense_data(str(tmp_path / "cs"))
    job = job_of(finetune_args(train, evals))
    clients, _ = client_examples(job)
    paths = write_partition_files(job, str(tmp_path / "nodes"), private=True)
    assert [os.path.relpath(p, tmp_path / "nodes") for p in paths] == [f"node-{i}/partition.json" for i in range(3)]
    assert all(os.stat(os.path.dirname(p)).st_mode & 0o777 == 0o700 for p in paths)
    for i, path in enumerate(paths):
        mine = load_partition_file(path, i, 3, recipe_digest(job))
        assert [(e.family, e.prompt, e.target) for e in mine] == [(e.family, e.prompt, e.target) for e in clients[i]]
    assert all(clients) and sum(len(c) for c in clients) == 48


def test_a_node_trains_on_its_file_as_in_process(tmp_path):
    """LocalTask over the node's file gives client i's upload bit for bit (same batches, same tokens)."""
    from fslora_ref.algorithms import get_algorithm
    from llm_bridge.client import train_client
    from llm_bridge.federated import ModelShapes
    from llm_bridge.finetune import build_data, make_config, setup_torch
    from llm_bridge.models import load_model
    from llm_bridge.node_data import LocalTask, load_partition_file, recipe_digest, write_partition_files
    from llm_bridge.peft_layers import LoraLayers, add_lora
    from llm_bridge.task import InstructionTask
    train, evals = commonsense_data(str(tmp_path / "cs"))
    job = job_of(finetune_args(train, evals, "--budgets", "2,4,8"))
    setup_torch(1)
    model, tok = load_model("tiny", seed=job.seed)
    layers = LoraLayers(add_lora(model, job.rank, job.alpha, list(job.targets), job.rslora))
    task, _, _ = build_data(job, tok)
    config = make_config(job, layers)
    algo = get_algorithm("fslora")
    shapes = ModelShapes(layers, task.client_sizes)
    plans = algo.configure_round(algo.init(shapes, config), shapes, config, 0, [0, 1, 2])
    paths = write_partition_files(job, str(tmp_path / "parts"))
    for plan, path in zip(plans, paths):
        ref = train_client(layers, task, plan, config, 0)
        local = LocalTask(InstructionTask(tok, [load_partition_file(path, plan.client, 3, recipe_digest(job))],
                                          job.batch_size), plan.client)
        got = train_client(layers, local, plan, config, 0)
        assert got.losses == ref.losses
        assert all(np.array_equal(x, y) for a, b in zip(got.deltas, ref.deltas) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="holds the data of client 0, not of client 1"):
        LocalTask(local.task, 0).sample_batch(1, np.random.default_rng(0))


def _hostile(tmp_path, good):
    """(file, expected message) pairs: each a realistic wrong or hostile node data file."""
    doc = json.loads(open(good).read())
    cases = []

    def write(name, content):
        path = str(tmp_path / name)
        with open(path, "w") as fh:
            fh.write(content if isinstance(content, str) else json.dumps(content))
        return path
    cases.append((write("garbage.json", "{not json"), "is not valid JSON"))
    cases.append((write("records.json", doc["examples"]), r"not an fslora finetune partition file \(format 'list'"))
    cases.append((write("other-format.json", dict(doc, format="fslora-partition-1")), "format 'fslora-partition-1'"))
    cases.append((write("client1.json", dict(doc, client=1)), "holds client 1, but this node is partition-id 0"))
    cases.append((write("client-bool.json", dict(doc, client=True)), "'client' must be an integer, got True"))
    cases.append((write("n5.json", {**doc, "n-clients": 5}), "is one of 5 partitions, but the job has 3 clients"))
    cases.append((write("recipe.json", dict(doc, recipe="0" * 64)), "was made for another job"))
    cases.append((write("empty.json", dict(doc, examples=[])), "'examples' must be a non-empty list"))
    cases.append((write("field.json", dict(doc, examples=[{"family": "odd", "prompt": 3, "target": "x"}])),
                  "example 0: needs string fields"))
    cases.append((write("deep.json", dict(doc, examples=[{"family": [[["x"]]]}])), "nest"))
    os.mkfifo(str(tmp_path / "pipe.json"))
    cases.append((str(tmp_path / "pipe.json"), "named pipe"))
    cases.append((str(tmp_path), "directory"))
    cases.append((str(tmp_path / "absent.json"), "does not exist"))
    return cases


def test_hostile_or_mismatched_partition_files_are_one_line_errors(tmp_path):
    from llm_bridge.node_data import load_partition_file, recipe_digest, write_partition_files
    job = job_of([*TINY, "--examples-per-client", "6"])
    digest = recipe_digest(job)
    good = write_partition_files(job, str(tmp_path / "parts"))[0]
    assert len(load_partition_file(good, 0, 3, digest)) == 6
    for path, expected in _hostile(tmp_path, good):
        with pytest.raises((ValueError, FileNotFoundError)) as err:
            load_partition_file(path, 0, 3, digest)
        text = str(err.value)
        assert "\n" not in text and path in text, (path, text)
        assert __import__("re").search(expected, text), (path, text)
    with pytest.raises(ValueError, match="made for another job"):   # another seed is another split
        load_partition_file(good, 0, 3, recipe_digest(job.replace(seed=4)))


def test_the_server_takes_the_announcements_and_names_a_bad_node(tmp_path):
    from fslora_flower.finetune_data import gathered
    from llm_bridge.node_data import announcement, load_partition_file, recipe_digest, write_partition_files
    job = job_of([*TINY, "--examples-per-client", "6"])
    digest = recipe_digest(job)
    paths = write_partition_files(job, str(tmp_path))
    answers = {i: announcement(load_partition_file(p, i, 3, digest), digest) for i, p in enumerate(paths)}
    nodes = {0: 10, 1: 11, 2: 12}
    data = gathered(answers, nodes, job)
    assert data.sizes == (6, 6, 6) and sum(sum(c.values()) for c in data.family_counts) == 18
    assert len(set(data.digests)) == 3
    assert gathered({i: {} for i in range(3)}, nodes, job) is None
    with pytest.raises(ValueError, match=r"partition-id 1 \(node 11\) has no partition file while other nodes do"):
        gathered({**answers, 1: {}}, nodes, job)
    with pytest.raises(ValueError, match=r"partition-id 2 \(node 12\) holds a partition made for another job"):
        gathered({**answers, 2: dict(answers[2], **{"data-recipe": "f" * 64})}, nodes, job)
    with pytest.raises(ValueError, match=r"partition-id 0 \(node 10\) holds a partition made for another job"):
        gathered(answers, nodes, job.replace(dirichlet_alpha=0.3))
    with pytest.raises(ValueError, match=r"partition-id 0 \(node 10\) announced family counts .* do not add up"):
        gathered({**answers, 0: dict(answers[0], examples=7)}, nodes, job)


# -- whole runs -------------------------------------------------------------------------------------
def test_in_process_grid_run_with_node_local_data_equals_in_process(tmp_path, capsys):
    """The ServerApp on an InProcessGrid (real ClientApps, Flower's serialisation, no processes)."""
    from flwr.app import Context, RecordDict

    from fslora_cli.flower import run_config
    from fslora_flower import server_app
    from inprocess import InProcessGrid
    from llm_bridge.node_data import write_partition_files
    train, evals = commonsense_data(str(tmp_path / "cs"))
    ref, fl = str(tmp_path / "in_process"), str(tmp_path / "flower")
    assert main(["finetune", *finetune_args(train, evals, "--budgets", "2,4,8"), "--out", ref]) == 0
    job = job_of(finetune_args(train, evals, "--ratios", "0.125"))
    paths = write_partition_files(job, str(tmp_path / "nodes"), private=True)
    for spec in train:                         # the training files are gone: nobody may read them now
        path = spec.split("=", 1)[1]
        os.replace(path, path + ".moved")
    rc = run_config("finetune", job_parser_args(finetune_args(train, evals, "--ratios", "0.125"), fl), fl,
                    discovery_timeout=60.0, round_timeout=300.0)
    nodes = {i: {"data": p, "budget": k, "device": "cpu"} for i, (p, k) in enumerate(zip(paths, BUDGETS))}
    grid = InProcessGrid(rc, 3, node_config=nodes)
    server_app.main(grid, Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config=rc))
    assert_same_run(ref, fl)
    ledger = json.load(open(os.path.join(fl, "flower.json")))["runs"][-1]
    assert {c: (a["budget"], a["examples"]) for c, a in ledger["announced"].items()} == {
        str(i): (k, n) for i, (k, n) in enumerate(zip(BUDGETS, json.load(open(os.path.join(ref, "history.json")))
                                                      ["client_sizes"]))}
    # nothing the nodes sent back carries an example: the replies are the uploads and the announcements
    assert "budgets announced by the SuperNodes: [2, 4, 8]" in capsys.readouterr().out


def job_parser_args(argv, out):
    from fslora_cli.flower import job_parser
    return job_parser("finetune").parse_args([*argv, "--out", out])


def test_a_bad_partition_file_stops_the_run_naming_the_node_exit_2(tmp_path, capsys, monkeypatch):
    """`fslora flower finetune --node-local` (deployment replaced by an in-process one): a node whose
    file is another client's stops the run in discovery, one line, exit 2, before round 1."""
    from fslora_cli import flower_deploy as deploy
    from inprocess import InProcessDeployment
    from llm_bridge import node_data

    real = node_data.write_partition_files

    def swapped(job, directory, private=False):     # node 1 gets node 0's file
        paths = real(job, directory, private)
        with open(paths[0]) as src, open(paths[1], "w") as dst:
            dst.write(src.read())
        return paths
    monkeypatch.setattr(node_data, "write_partition_files", swapped)
    monkeypatch.setattr(deploy, "LocalDeployment", InProcessDeployment)
    out = tmp_path / "o"
    code = main(["flower", "finetune", *TINY, "--examples-per-client", "6", "--node-local", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "\n" not in err
    assert "could not prepare the job: node data" in err and "holds client 0, but this node is partition-id 1" in err
    ledger = json.load(open(out / "flower.json"))["runs"][-1]
    assert ledger["status"] == "failed" and ledger["exit-code"] == 2 and ledger["rounds"] == []


def test_node_local_finetune_command_equals_in_process(tmp_path, capsys, monkeypatch):
    """`fslora flower finetune --node-local` writes one private directory per node and starts each
    node with its file and its k_i (deployment replaced by an in-process one)."""
    from fslora_cli import flower_deploy as deploy
    from inprocess import InProcessDeployment
    seen = []

    class Recording(InProcessDeployment):
        def __init__(self, n_nodes, log_dir, node_configs=None, **kw):
            seen.append(node_configs)
            super().__init__(n_nodes, log_dir, node_configs=node_configs, **kw)
    monkeypatch.setattr(deploy, "LocalDeployment", Recording)
    train, evals = commonsense_data(str(tmp_path / "cs"))
    ref, fl = str(tmp_path / "in_process"), str(tmp_path / "flower")
    argv = finetune_args(train, evals, "--budgets", "2,4,8")
    assert main(["finetune", *argv, "--out", ref]) == 0
    assert main(["flower", "finetune", *argv, "--node-local", "--out", fl]) == 0, capsys.readouterr().err
    assert seen[0] == [f'data="{os.path.join(fl, "node-data", f"node-{i}", "partition.json")}" budget={k}'
                       for i, k in enumerate(BUDGETS)]
    assert_same_run(ref, fl)


def test_loopback_deployment_with_node_local_data_equals_in_process(tmp_path, capsys, deployments):
    """The acceptance run: a real loopback deployment (SuperLink, three SuperNodes, TLS), each node
    with its own partition file announcing k_i = 2, 4, 8 while the run config says 1, 1, 1, the
    training files moved away before the run: equal to `fslora finetune --budgets 2,4,8`."""
    from fslora_cli.flower import run_config
    from fslora_cli.flower_deploy import APP_DIR, LocalDeployment, marked_processes
    from llm_bridge.node_data import write_partition_files
    train, evals = commonsense_data(str(tmp_path / "cs"))
    ref, fl = str(tmp_path / "in_process"), str(tmp_path / "flower")
    assert main(["finetune", *finetune_args(train, evals, "--budgets", "2,4,8"), "--out", ref]) == 0
    argv = finetune_args(train, evals, "--ratios", "0.125")
    paths = write_partition_files(job_of(argv), str(tmp_path / "nodes"), private=True)
    for spec in train:
        path = spec.split("=", 1)[1]
        os.replace(path, path + ".moved")
    configs = [f'data="{p}" budget={k} device="cpu"' for p, k in zip(paths, BUDGETS)]
    os.makedirs(fl)
    with LocalDeployment(3, str(tmp_path / "logs"), start_timeout=120, stop_timeout=15, node_configs=configs) as dep:
        rc = run_config("finetune", job_parser_args(argv, fl), fl, round_timeout=900.0, discovery_timeout=600.0)
        result = dep.run(APP_DIR, rc, timeout=1500)
        token = dep.token
    assert result.ok, result.details
    assert marked_processes(token) == []
    assert_same_run(ref, fl)
    ledger = json.load(open(os.path.join(fl, "flower.json")))["runs"][-1]
    assert [ledger["announced"][str(i)]["budget"] for i in range(3)] == BUDGETS


def test_a_node_announces_its_own_device_and_dtype_and_a_bad_one_is_named():
    from fslora_flower.llm_client import node_settings
    job = job_of(TINY)
    assert node_settings(job, {}) == ("cpu", "float32")
    assert node_settings(job, {"dtype": "float64", "device": "cuda:1"}) == ("cuda:1", "float64")
    with pytest.raises(ValueError, match=r"node config dtype='float16' must be one of \['float32', 'bfloat16', 'float64'\]"):
        node_settings(job, {"dtype": "float16"})
    with pytest.raises(ValueError, match="gpu"):
        node_settings(job, {"device": "gpu"})
