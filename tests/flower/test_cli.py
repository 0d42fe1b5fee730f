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
    (["--clients", "0"], "--clients must be >= 1"),
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
