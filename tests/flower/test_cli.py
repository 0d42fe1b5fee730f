"""`fslora flower`: bad options fail in one line before anything starts; --export-run-config
writes the run config a remote `flwr run` needs."""
import json
import tomllib

import pytest

from fslora_cli.main import main
from fslora_flower import deploy
from fslora_flower.settings import Settings


def one_line_error(capsys, argv, code=2):
    assert main(argv) == code
    captured = capsys.readouterr()
    err = (captured.err or captured.out).strip()
    assert "\n" not in err and "error:" in err, err
    return err


@pytest.mark.parametrize("argv,needle", [
    (["--clients", "0"], "--clients must be an integer in [1, "),
    (["--budgets", "1,2"], "--budgets must list 20 values"),
    (["--ratios", "0.5,2"], "(0, 1]"),
])
def test_simulate_options_are_checked_before_starting(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.setattr(deploy.LocalDeployment, "start", lambda self: pytest.fail("a deployment was started"))
    err = one_line_error(capsys, ["flower", "simulate", *argv, "--out", str(tmp_path / "o")])
    assert needle in err


def test_finetune_options_are_checked_before_starting(tmp_path, capsys):
    err = one_line_error(capsys, ["flower", "finetune", "--model", str(tmp_path / "nope"), "--out", str(tmp_path)])
    assert "nope" in err
    assert "--device" in one_line_error(capsys, ["flower", "finetune", "--model", "tiny", "--device", "gpu"])


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
