"""Checkpoints are data only: no file makes the loader execute code, every bad file is a one-line
error naming it, and a resumed run of every algorithm (server Adam, client AdamW) is
bit-identical to an uninterrupted one."""
from __future__ import annotations

import numpy as np
import pytest

from fslora_cli.main import main
from fslora_ref import ALGORITHMS, FedConfig, get_algorithm, least_squares, run
from fslora_ref import federation
from fslora_ref.federation import checkpoint_path, load_checkpoint

from .clitools import one_line_error
from .hostile import hostile_files, payload_runs

SIM = ["simulate", "--algorithms", "fslora", "--clients", "3", "--rank", "4", "--m", "6", "--n", "4",
       "--batch-size", "4", "--local-steps", "2"]


def test_hostile_files_never_execute_code(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(SIM + ["--rounds", "1", "--out", str(out)]) == 0
    ckpt = out / "checkpoint-fslora.npz"
    valid = ckpt.read_bytes()
    marker = tmp_path / "code-ran"
    for name, data in hostile_files(valid, marker).items():
        ckpt.write_bytes(data)
        err = one_line_error(capsys, SIM + ["--rounds", "2", "--out", str(out), "--resume"])
        assert str(ckpt) in err, (name, err)
        assert not marker.exists(), f"{name}: loading the checkpoint executed code"
    assert payload_runs(tmp_path / "control"), "the payload is live: unpickling it does run code"


def test_old_pickle_checkpoint_is_refused_not_loaded(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(SIM + ["--rounds", "1", "--out", str(out)]) == 0
    marker = tmp_path / "code-ran"
    legacy = out / "checkpoint-fslora.pkl"
    legacy.write_bytes(hostile_files((out / "checkpoint-fslora.npz").read_bytes(), marker)["old pickle"])
    (out / "checkpoint-fslora.npz").unlink()
    err = one_line_error(capsys, SIM + ["--rounds", "2", "--out", str(out), "--resume"])
    assert str(legacy) in err and "pickle" in err and "never loaded" in err
    assert not marker.exists()


def test_a_directory_in_place_of_the_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoint-fslora.npz").mkdir(parents=True)
    err = one_line_error(capsys, SIM + ["--rounds", "1", "--out", str(out), "--resume"])
    assert "is a directory" in err


# -- bit-identical resume of every algorithm -----------------------------------------------------
def assert_same_tree(a, b, where="state"):
    assert type(a) is type(b), f"{where}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), f"{where}: arrays differ"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a)} vs {sorted(b)}"
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{where}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} vs {b!r}"


def check_resume_identical(name, tmp_path, **options):
    problem = least_squares(n_clients=4, m=8, n=5, mean_size=16, seed=1, batch_size=4)
    config = FedConfig(rank=6, budgets=[1, 2, 4, 6], local_steps=2, lr=0.01, rounds=4, seed=3, **options)
    full = run(get_algorithm(name), problem, config)
    ckpt = checkpoint_path(tmp_path, name)
    run(get_algorithm(name), problem, config, checkpoint=ckpt, stop_after=2)
    resumed = run(get_algorithm(name), problem, config, checkpoint=ckpt, resume=True)
    assert resumed.to_json() == full.to_json(), f"{name}: resumed history differs"
    assert_same_tree(full.final_state.layers, resumed.final_state.layers, "layers")
    assert_same_tree(full.final_state.extra, resumed.final_state.extra, "extra")


ADAM = dict(server_optimizer="adam", server_lr=0.05, client_optimizer="adamw", weight_decay=0.01)


@pytest.mark.parametrize("options", [{}, ADAM], ids=["sgd", "server-adam-client-adamw"])
@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_resume_is_bit_identical_for_every_algorithm(name, options, tmp_path):
    check_resume_identical(name, tmp_path, **options)


def _forgets_adam_moments(path, name, config, state, history, next_round, **kw):
    extra = {k: v for k, v in state.extra.items() if k != "server_opt"}
    SAVE(path, name, config, type(state)(state.layers, extra), history, next_round, **kw)


def _saves_float32(path, name, config, state, history, next_round, **kw):
    layers = [(B.astype(np.float32).astype(float), A) for B, A in state.layers]
    SAVE(path, name, config, type(state)(layers, state.extra), history, next_round, **kw)


SAVE = federation.save_checkpoint


@pytest.mark.parametrize("mutant", [_forgets_adam_moments, _saves_float32])
def test_resume_check_catches_a_lossy_checkpoint(mutant, tmp_path, monkeypatch):
    monkeypatch.setattr(federation, "save_checkpoint", mutant)
    with pytest.raises((AssertionError, ValueError)):
        check_resume_identical("fslora", tmp_path, **ADAM)


# -- a checkpoint resumes only its own run -----------------------------------------------------
def test_resume_names_every_differing_field(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(SIM + ["--rounds", "1", "--out", str(out)]) == 0
    cases = {("--family", "logistic"): ["family (\"least_squares\" in the checkpoint, \"logistic\" now)", "link"],
             ("--batch-size", "2"): ["batch_size (4 in the checkpoint, 2 now)"],
             ("--m", "7"): ["m (6 in the checkpoint, 7 now)", "layer_shapes", "data_sha256"],
             ("--seed", "1"): ["seed (0 in the checkpoint, 1 now)", "data_sha256"],
             ("--rank", "5"): ["rank (4 in the checkpoint, 5 now)"],
             ("--client-optimizer", "adamw"): ["client_optimizer"],
             ("--budgets", "1,2,4"): ["budgets ([1, 1, 2] in the checkpoint, [1, 2, 4] now)"]}
    for change, words in cases.items():
        err = one_line_error(capsys, SIM + ["--rounds", "2", "--out", str(out), "--resume", *change])
        assert "belongs to a different run" in err
        for w in words:
            assert w in err, (change, w, err)
    assert main(SIM + ["--rounds", "2", "--out", str(out), "--resume"]) == 0  # the same run resumes


def test_resume_with_fewer_rounds_and_without_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(SIM + ["--rounds", "3", "--out", str(out)]) == 0
    err = one_line_error(capsys, SIM + ["--rounds", "2", "--out", str(out), "--resume"])
    assert "already holds 3 rounds" in err and "--rounds >= 3" in err
    fresh = tmp_path / "fresh"
    assert main(SIM + ["--rounds", "1", "--out", str(fresh), "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"no checkpoint for fslora in {fresh}; starting it fresh" in err


def test_history_is_refused_when_state_and_history_disagree(tmp_path):
    problem = least_squares(n_clients=2, m=5, n=3, mean_size=8, seed=0)
    config = FedConfig(rank=3, budgets=[1, 3], local_steps=1, lr=0.01, rounds=2)
    ckpt = checkpoint_path(tmp_path, "fslora")
    run(get_algorithm("fslora"), problem, config, checkpoint=ckpt, stop_after=1)
    identity = federation.problem_identity(problem)
    state, history, t = load_checkpoint(ckpt, "fslora", config, identity=identity)
    federation.save_checkpoint(ckpt, "fslora", config, type(state)([(B * 2, A + 1) for B, A in state.layers], state.extra),
                               history, t, identity=identity)
    with pytest.raises(ValueError, match="history records .* inconsistent"):
        run(get_algorithm("fslora"), problem, config, checkpoint=ckpt, resume=True)
