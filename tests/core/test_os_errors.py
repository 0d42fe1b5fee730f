"""Operating-system trouble is one line (exit 2) naming the file: a full disk (a fault-injecting
writer), a directory where the run writes a file (checked before anything is computed), JSON
nested to exhaust the parser in runs.json."""
from __future__ import annotations

import errno
import io
import os

import pytest

from fslora_cli.main import main
from fslora_ref.outputs import TMP_PREFIX

from .clitools import one_line_error

SIM = ["simulate", "--clients", "2", "--rank", "2", "--m", "4", "--n", "3", "--algorithms", "fslora,flora"]


class FullDisk(io.RawIOBase):
    """A binary file that takes a few bytes, then fails as a full disk does."""

    def __init__(self, real):
        self.real = real

    def writable(self):
        return True

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fileno(self):
        return self.real.fileno()

    def close(self):
        self.real.close()
        super().close()


def test_disk_full_is_one_line_and_keeps_the_old_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(SIM + ["--rounds", "1", "--out", str(out)]) == 0
    before = (out / "checkpoint-fslora.npz").read_bytes()
    real_fdopen = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        fh = real_fdopen(fd, mode, *args, **kwargs)
        return FullDisk(fh) if "w" in mode and "b" in mode else fh
    monkeypatch.setattr(os, "fdopen", fdopen)
    err = one_line_error(capsys, SIM + ["--rounds", "2", "--out", str(out), "--resume"])
    monkeypatch.undo()
    assert "No space left on device" in err and "checkpoint-fslora.npz" in err, err
    assert (out / "checkpoint-fslora.npz").read_bytes() == before          # the old file is intact
    assert not [p for p in os.listdir(out) if p.startswith(TMP_PREFIX)]   # and no temp file is left


@pytest.mark.parametrize("name", ["history.json", "simulate.png", "checkpoint-flora.npz"])
def test_a_directory_where_a_file_goes_is_refused_before_computing(tmp_path, capsys, name):
    out = tmp_path / "run"
    (out / name).mkdir(parents=True)
    err = one_line_error(capsys, SIM + ["--rounds", "1", "--out", str(out)])
    assert f"{out / name} is a directory" in err and "remove or rename it" in err, err
    assert not (out / "checkpoint-fslora.npz").exists()   # nothing was computed


def test_verify_and_claims_check_their_names_too(tmp_path, capsys):
    out = tmp_path / "v"
    (out / "report.md").mkdir(parents=True)
    # the options are checked first (a bad --only never touches --out), then the names in --out
    err = one_line_error(capsys, ["verify", "--out", str(out), "--only", "objective.closed_form"])
    assert "report.md is a directory" in err, err
    out = tmp_path / "c"
    (out / "runs.json").mkdir(parents=True)
    err = one_line_error(capsys, ["claims", "--quick", "--only", "1", "--out", str(out)])
    assert "runs.json is a directory" in err, err


def test_deeply_nested_runs_json_is_one_line(tmp_path, capsys):
    out = tmp_path / "c"
    out.mkdir()
    (out / "runs.json").write_text("[" * 100_000 + "]" * 100_000)
    err = one_line_error(capsys, ["claims", "--quick", "--only", "1", "--family", "least_squares", "--resume",
                                  "--out", str(out)])
    assert "runs.json" in err and "levels deep" in err, err
    os.unlink(out / "runs.json")
    os.mkfifo(out / "runs.json")
    err = one_line_error(capsys, ["claims", "--quick", "--only", "1", "--family", "least_squares", "--resume",
                                  "--out", str(out)])
    assert "runs.json is not a regular file" in err, err   # refused before anything opens it
