"""`fslora finetune` / `bench --bridge`: bad paths, options and checkpoints are one-line errors
before the model is loaded, a hostile checkpoint never runs code, outputs follow the umask."""
import json
import os
import stat

import numpy as np
import pytest

from fslora_ref import FedConfig, get_algorithm, least_squares, run
from fslora_ref.federation import checkpoint_path
from fslora_ref.output_lock import release_all
from fslora_ref.outputs import TMP_PREFIX
from fslora_cli import finetune as cli

from helpers import TINY, finetune_args
from tests.core.clitools import one_line_error
from tests.core.hostile import hostile_files, payload_runs


@pytest.fixture
def no_model(monkeypatch):
    import llm_bridge.finetune
    import llm_bridge.models

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the error was reported")
    monkeypatch.setattr(llm_bridge.finetune, "load_model", never)
    monkeypatch.setattr(llm_bridge.models, "load_model", never)


def valid_checkpoint_bytes(tmp_path) -> bytes:
    problem = least_squares(n_clients=2, m=4, n=3, mean_size=8, seed=0)
    path = checkpoint_path(tmp_path / "numpy-run", "fslora")
    run(get_algorithm("fslora"), problem, FedConfig(rank=2, budgets=[1, 2], local_steps=1, lr=0.01, rounds=1),
        checkpoint=path)
    with open(path, "rb") as fh:
        return fh.read()


def test_hostile_checkpoint_is_refused_before_the_model_loads(tmp_path, capsys, no_model):
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "code-ran"
    ckpt = out / "checkpoint-fslora.npz"
    for name, data in hostile_files(valid_checkpoint_bytes(tmp_path), marker).items():
        ckpt.write_bytes(data)
        err = one_line_error(capsys, ["finetune", *TINY, "--out", str(out), "--resume"])
        assert str(ckpt) in err, (name, err)
        assert not marker.exists(), f"{name}: loading the checkpoint executed code"
    ckpt.unlink()
    legacy = out / "checkpoint.pkl"
    legacy.write_bytes(hostile_files(valid_checkpoint_bytes(tmp_path), marker)["old pickle"])
    err = one_line_error(capsys, ["finetune", *TINY, "--out", str(out), "--resume"])
    assert str(legacy) in err and "never loaded" in err and not marker.exists()
    assert payload_runs(tmp_path / "control")


def test_resume_other_algorithm_or_nothing(tmp_path, capsys, no_model):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint-fedit.npz").write_bytes(b"")
    err = one_line_error(capsys, ["finetune", *TINY, "--out", str(out), "--resume"])
    assert "differing field: algorithm ('fedit'" in err and "'fslora' now" in err
    empty = tmp_path / "empty"
    capsys.readouterr()
    cli.validate(finetune_args("--out", str(empty), "--resume"))
    assert f"no checkpoint in {empty}; starting fresh" in capsys.readouterr().err


@pytest.mark.parametrize("extra,words", [
    (["--budgets", ""], "--budgets must list 2 values (one per client), got 0"),
    (["--budgets", "2"], "--budgets must list 2 values (one per client), got 1"),
    (["--budgets", "2,9"], "--budgets[1] must be an integer in [1, 8], got 9"),
    (["--ratios", ""], "--ratios must be comma-separated numbers in (0, 1]"),
    (["--eval-json", "EVAL"], "--eval-json needs --train-json"),
    (["--train-json", "EVAL"], "--train-json needs --eval-json"),
    (["--train-json", "EVAL", "--eval-json", "EVAL", "--families", "addition"], "--families only apply"),
    (["--train-json", "EVAL", "--eval-json", "EVAL", "--examples-per-client", "5"], "--examples-per-client only apply"),
    (["--server-lr", "0.1"], "--server-lr only applies with --server-optimizer"),
    (["--rank", "0"], "--rank must be an integer in [1, 1024], got 0"),
    (["--targets", ""], "--targets must name at least one module"),
    (["--threads", "100000"], "--threads must be an integer in [1, "),            # used to crash torch
    (["--rank", "1000000000"], "--rank must be an integer in [1, 1024]"),          # used to be a traceback
    (["--clients", "1000000000"], "--clients must be an integer in [1, 10000]"),   # used to run away
    (["--examples-per-client", "1000000000"], "--examples-per-client must be an integer in [1, 1000000]"),
    (["--clients", "10000", "--examples-per-client", "10000"], "--clients x --examples-per-client must be at most"),
    (["--rounds", str(10**29)], "--rounds must be an integer in [1, 1000000]"),
    (["--local-steps", str(10**29)], "--local-steps must be an integer in [1, 100000]"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_finetune_options_fail_before_the_model_loads(tmp_path, capsys, no_model, extra, words):
    data = tmp_path / "eval.json"
    data.write_text(json.dumps([{"instruction": "q", "input": "", "output": "true", "answer": "true"}]))
    extra = [str(data) if x == "EVAL" else x for x in extra]
    err = one_line_error(capsys, ["finetune", *TINY, "--out", str(tmp_path / "o"), *extra])
    assert words in err, err


def test_bad_paths_fail_before_the_model_loads(tmp_path, capsys, no_model):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert "is an existing file" in one_line_error(capsys, ["finetune", *TINY, "--out", str(a_file)])
    assert "is a file, not a directory" in one_line_error(capsys, ["finetune", *TINY, "--out", str(a_file / "o")])
    for path, words in ((a_file / "b.json", "is a file, not a directory"), (tmp_path, "is a directory")):
        assert words in one_line_error(capsys, ["bench", "--bridge", "--tiny", "--json", str(path)])
    assert "--k must be an integer in [1, 8]" in one_line_error(capsys, ["bench", "--bridge", "--tiny", "--rank", "8",
                                                                        "--k", "9"])


def test_outputs_follow_the_umask_and_orphans_are_removed(tmp_path):
    from fslora_cli.finetune import finetune
    out = tmp_path / "run"
    (out / (TMP_PREFIX + "adapter-of-a-killed-run")).mkdir(parents=True)
    old = os.umask(0o022)
    try:
        finetune(finetune_args("--out", str(out), "--rounds", "1", "--no-verify-adapter"))
    finally:
        os.umask(old)
    assert [p for p in os.listdir(out) if p.startswith(".")] == [".fslora-lock"]  # held until the command ends
    release_all()
    assert not [p for p in os.listdir(out) if p.startswith(".")]
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(out / "adapter") == 0o755
    for path in [out / "history.json", out / "curves.png", out / "checkpoint-fslora.npz", *(out / "adapter").iterdir()]:
        assert mode(path) == 0o644, path
    json.loads((out / "history.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in history.json"))


def test_lying_server_state_in_a_finetune_checkpoint_is_one_line(tmp_path, capsys):
    """Adam moments replaced by scalars (or a step count of 10**400) used to resume silently with
    different results; the schema check refuses it in one line naming the part."""
    from fslora_cli.finetune import finetune
    from tests.core.hostile import _edited, _set
    out = tmp_path / "run"
    adam = ["--server-optimizer", "adam", "--server-lr", "0.01", "--no-verify-adapter"]
    finetune(finetune_args("--out", str(out), "--rounds", "1", *adam))
    release_all()
    ckpt = out / "checkpoint-fslora.npz"
    valid = ckpt.read_bytes()
    cases = {"scalars": _set(("server_opt", "m"), lambda m: [np.float64(0.0) for _ in m]),
             "step 10**400": _set(("server_opt", "t"), 10**400)}
    for name, edit in cases.items():
        ckpt.write_bytes(_edited(valid, edit, tmp_path))
        err = one_line_error(capsys, ["finetune", *TINY, *adam, "--out", str(out), "--resume"])
        assert str(ckpt) in err and "state.extra.server_opt" in err, (name, err)
