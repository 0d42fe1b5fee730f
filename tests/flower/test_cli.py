"""`fslora flower`: bad options fail in one line before anything starts; --export-run-config
writes the run config a remote `flwr run` needs."""
import json
import tomllib

import pytest

from fslora_cli.main import main
from fslora_cli import flower_deploy as deploy
from fslora_flower.settings import Settings


def one_line_error(capsys, argv, code=2):
    assert main(argv) == code
    captured = capsys.readouterr()
    err = (captured.err or captured.out).strip()
    assert "\n" not in err and "error:" in err, err
    return err


def error_text(err):
    return err.split("error: ", 1)[1]


@pytest.mark.parametrize("argv", [
    ["--clients", "0"], ["--budgets", "1,2"], ["--ratios", "0.5,2"], ["--server-lr", "0.1"], ["--r-min", "2"],
    ["--algorithms", ""], ["--algorithms", "fslora,fslora"], ["--lr", "-1"],
])
def test_simulate_options_get_the_in_process_checks(tmp_path, capsys, monkeypatch, argv):
    """Same one-line message as `fslora simulate`, before any deployment starts."""
    monkeypatch.setattr(deploy.LocalDeployment, "start", lambda self: pytest.fail("a deployment was started"))
    expected = one_line_error(capsys, ["simulate", *argv, "--out", str(tmp_path / "o")])
    err = one_line_error(capsys, ["flower", "simulate", *argv, "--out", str(tmp_path / "o")])
    assert error_text(err) == error_text(expected)


@pytest.mark.parametrize("argv", [
    ["--model", "tiny", "--clients", "3", "--budgets", "2,4"],
    ["--model", "tiny", "--server-lr", "0.5"],
    ["--model", "tiny", "--eval-json", "x.json"],
    ["--model", "tiny", "--train-json", "boolq=a.json", "--eval-json", "b.json", "--families", "arith"],
    ["--model", "tiny", "--device", "gpu"],
    ["--model", "tiny", "--train-json", "boolq=missing.json", "--eval-json", "missing2.json"],
])
def test_finetune_options_get_the_in_process_checks(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.setattr(deploy.LocalDeployment, "start", lambda self: pytest.fail("a deployment was started"))
    monkeypatch.chdir(tmp_path)
    expected = one_line_error(capsys, ["finetune", *argv, "--out", str(tmp_path / "o")])
    err = one_line_error(capsys, ["flower", "finetune", *argv, "--out", str(tmp_path / "o")])
    # the Flower command passes absolute data paths on to the nodes; the message is otherwise the same
    assert error_text(err).replace(str(tmp_path) + "/", "") == error_text(expected)


def test_finetune_model_path_is_checked_before_starting(tmp_path, capsys):
    err = one_line_error(capsys, ["flower", "finetune", "--model", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert "nope" in err


def test_named_data_files_keep_their_family(tmp_path, monkeypatch):
    from fslora_cli.flower import job_args
    from fslora_cli.flower import job_parser
    monkeypatch.chdir(tmp_path)
    (tmp_path / "boolq").mkdir()
    args = job_parser("finetune").parse_args(["--train-json", "arc=data/ARC/train.json", "boolq/train.json",
                                              "--eval-json", "boolq/test.json"])
    ns = job_args("finetune", args)
    assert ns.train_json == [f"arc={tmp_path}/data/ARC/train.json", f"{tmp_path}/boolq/train.json"]
    assert ns.eval_json == [f"{tmp_path}/boolq/test.json"]


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert "is an existing file" in one_line_error(capsys, ["flower", "simulate", "--out", str(f)])


def test_export_run_config(tmp_path, capsys):
    path = tmp_path / "job.toml"
    assert main(["flower", "simulate", "--clients", "3", "--rounds", "4", "--out", "relative/out",
                 "--on-missing", "continue", "--round-timeout", "30", "--export-run-config", str(path)]) == 0
    assert "flwr run" in capsys.readouterr().out
    rc = tomllib.loads(path.read_text())
    settings = Settings.from_run_config(rc)            # what the ServerApp and every node will read
    assert settings.job == "simulate" and settings.on_missing == "continue" and settings.round_timeout == 30
    args = json.loads(rc["job-args"])
    assert args["clients"] == 3 and args["rounds"] == 4 and args["out"].endswith("relative/out")
    assert args["out"].startswith("/") and "round_timeout" not in args     # only the job's own options


def test_run_config_job_args_are_checked():
    """What every node reads: unknown options are refused, missing ones take the command's default."""
    rc = {"job": "simulate", "job-args": json.dumps({"clients": 3, "rounds": 2}), "out": "/x", "round-timeout": 5.0,
          "on-missing": "stop", "discovery-timeout": 5.0, "poll-interval": 0.5}
    settings = Settings.from_run_config(rc)
    assert settings.args.clients == 3 and settings.args.rank == 16 and settings.n_clients == 3
    with pytest.raises(ValueError, match=r"does not know: \['clientz'\]"):
        Settings.from_run_config(dict(rc, **{"job-args": json.dumps({"clientz": 3})}))
    with pytest.raises(ValueError, match="JSON object"):
        Settings.from_run_config(dict(rc, **{"job-args": "[1, 2]"}))
    with pytest.raises(ValueError, match="'job' must be one of"):
        Settings.from_run_config(dict(rc, job="train"))


def test_flower_options_are_checked(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(deploy.LocalDeployment, "start", lambda self: pytest.fail("a deployment was started"))
    err = one_line_error(capsys, ["flower", "simulate", "--round-timeout", "0", "--out", str(tmp_path)])
    assert "--round-timeout must be a finite number > 0" in err


def test_resume_of_another_run_is_refused_as_in_process(tmp_path, capsys, monkeypatch):
    """--resume against a checkpoint of a different problem: the in-process command's message
    (every differing field), exit 2, and no deployment started."""
    monkeypatch.setattr(deploy.LocalDeployment, "start", lambda self: pytest.fail("a deployment was started"))
    small = ["--clients", "3", "--budgets", "2,4,8", "--rank", "8", "--m", "12", "--n", "10", "--algorithms", "fslora"]
    out = str(tmp_path / "o")
    assert main(["simulate", *small, "--rounds", "1", "--out", out]) == 0
    capsys.readouterr()
    other = [*small, "--rounds", "2", "--batch-size", "4", "--family", "logistic", "--resume", "--out", out]
    expected = one_line_error(capsys, ["simulate", *other])
    err = one_line_error(capsys, ["flower", "simulate", *other])
    assert error_text(err) == error_text(expected)
    assert "belongs to a different run" in err and "batch_size" in err and "family" in err


def as_written_by_an_older_fslora(path, problem):
    """Rewrite a checkpoint as fslora before per-client data digests wrote it: no ``data_digest`` in its
    identity, ``data_sha256`` one SHA-256 over the base weights and every client's data."""
    import hashlib

    import numpy as np

    from fslora_ref.checkpoint_format import read_archive, write_archive
    header, tree = read_archive(path)
    digest = hashlib.sha256()
    for arr in list(problem.base_weights) + [x for c in problem.clients for x in (c.X, c.targets)]:
        arr = np.ascontiguousarray(arr)
        digest.update(f"{arr.dtype.str}{arr.shape}".encode())
        digest.update(arr.tobytes())
    assert header["identity"].pop("data_digest") == "per-client"
    header["identity"]["data_sha256"] = digest.hexdigest()
    write_archive(path, header, tree)


def test_a_checkpoint_of_an_older_fslora_is_refused_saying_why(tmp_path, capsys, monkeypatch):
    """A checkpoint whose data digest an older fslora made (all the data at once) is refused on
    --resume with a plain one-line reason and what to do, exit 2, by `fslora simulate` and by
    `fslora flower simulate` before any deployment starts; a current checkpoint still resumes."""
    import os

    from fslora_ref.jobs import SimulateJob
    from fslora_ref.simulate import build
    monkeypatch.setattr(deploy.LocalDeployment, "start", lambda self: pytest.fail("a deployment was started"))
    small = ["--clients", "3", "--budgets", "2,4,8", "--rank", "8", "--m", "12", "--n", "10", "--algorithms", "fslora"]
    out = str(tmp_path / "o")
    assert main(["simulate", *small, "--rounds", "1", "--out", out]) == 0
    ckpt = os.path.join(out, "checkpoint-fslora.npz")
    problem, _, _ = build(SimulateJob.from_dict(dict(clients=3, budgets="2,4,8", rank=8, m=12, n=10)))
    as_written_by_an_older_fslora(ckpt, problem)
    capsys.readouterr()
    again = [*small, "--rounds", "2", "--resume", "--out", out]
    expected = one_line_error(capsys, ["simulate", *again])
    err = one_line_error(capsys, ["flower", "simulate", *again])
    assert error_text(err) == error_text(expected)
    assert f"checkpoint {ckpt} was written by an older fslora" in err
    assert "start afresh (another --out, or without --resume)" in err and "differing fields" not in err
    fresh = str(tmp_path / "fresh")
    assert main(["simulate", *small, "--rounds", "1", "--out", fresh]) == 0
    assert main(["simulate", *small, "--rounds", "2", "--resume", "--out", fresh]) == 0


def test_flwr_build_accepts_the_app_and_the_fab_ships_only_the_app(tmp_path, capsys):
    import zipfile
    assert main(["flower", "fab", "--out", str(tmp_path)]) == 0
    fabs = list(tmp_path.glob("*.fab"))
    assert len(fabs) == 1 and f"wrote {fabs[0]}" in capsys.readouterr().out
    names = zipfile.ZipFile(fabs[0]).namelist()
    assert "pyproject.toml" in names and "fslora_flower/server_app.py" in names
    assert all(n.endswith((".py", ".toml", ".md")) or n.startswith(".") or n.endswith((".sig", ".json"))
               or "/.info/" in n or n.startswith(".info") for n in names), names
    assert not any("fslora_cli" in n or "fslora_ref" in n or "__pycache__" in n for n in names)
