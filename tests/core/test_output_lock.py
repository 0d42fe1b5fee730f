"""One writer per output: two processes on one --out, stale locks, private temp files."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from fslora_ref import output_lock
from fslora_ref.outputs import TMP_PREFIX, check_output_file, prepare_output_dir, remove_stale_temp_files

from .clitools import one_line_error

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM = ["simulate", "--clients", "2", "--rank", "2", "--rounds", "1", "--m", "4", "--n", "3", "--algorithms", "fslora"]

# a writer that holds --out (and one temp file of its own in it) until its stdin closes
HOLDER = """
import sys, tempfile
from fslora_ref.outputs import prepare_output_dir, private_temp_prefix
prepare_output_dir(sys.argv[1])
fd, path = tempfile.mkstemp(prefix=private_temp_prefix(), dir=sys.argv[1])
print(path, flush=True)
sys.stdin.read()
"""


def _env():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "flower_app")]))
    env.pop(output_lock.HOLDER_ENV, None)  # not a delegate of this test process
    return env


@pytest.fixture
def holder(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=_env(), cwd=ROOT)
    temp_file = proc.stdout.readline().strip()
    assert temp_file, "the holder did not start"
    yield proc, out, temp_file
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.mark.timeout(300)
def test_second_writer_refused_in_one_line_naming_the_holder(holder, capsys):
    proc, out, temp_file = holder
    err = one_line_error(capsys, SIM + ["--out", str(out)])
    assert f"PID {proc.pid}" in err and "python" in err and "in use" in err, err
    # a command that fails its own checks is refused by them before it looks at --out, and touches
    # nothing of the holder's; another command with good options is refused by the lock
    err = one_line_error(capsys, ["verify", "--out", str(out), "--only", "nonexistent"])
    assert "--only: unknown claim ids" in err, err
    err = one_line_error(capsys, ["verify", "--out", str(out), "--only", "objective.closed_form"])
    assert f"PID {proc.pid}" in err, err
    assert os.path.exists(temp_file)
    assert not (out / "history.json").exists()
    # a second process, not only a second call in this one
    done = subprocess.run([sys.executable, "-m", "fslora_cli.main", *SIM, "--out", str(out)], capture_output=True,
                          text=True, env=_env(), cwd=ROOT, timeout=600)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert f"PID {proc.pid}" in done.stderr
    assert os.path.exists(temp_file)
    # --json files inside a held directory are refused as well
    err = one_line_error(capsys, ["bench", "--json", str(out / "bench.json")])
    assert f"PID {proc.pid}" in err, err


@pytest.mark.timeout(300)
def test_stale_lock_of_a_killed_writer_is_taken_over(holder, capsys):
    proc, out, temp_file = holder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / output_lock.LOCK_NAME).exists()
    assert os.path.exists(temp_file)
    capsys.readouterr()
    from fslora_cli.main import main
    assert main(SIM + ["--out", str(out)]) == 0
    assert not os.path.exists(temp_file)  # the dead writer's temp file is gone
    assert (out / "history.json").exists()
    assert not (out / output_lock.LOCK_NAME).exists()  # released when the command ended


def test_a_reused_pid_does_not_keep_a_lock(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    # our parent is alive, but it is not the process that wrote this (its start time differs)
    (out / output_lock.LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "start": "1", "host": None,
                                                         "command": "fslora simulate"}))
    prepare_output_dir(out)
    assert output_lock.read_record(out / output_lock.LOCK_NAME)["pid"] == os.getpid()
    output_lock.release_all()
    assert not (out / output_lock.LOCK_NAME).exists()


def test_live_holder_in_another_process_is_refused_and_garbage_lock_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    ppid = os.getppid()
    lock = out / output_lock.LOCK_NAME
    lock.write_text(json.dumps({"pid": ppid, "start": output_lock.process_start(ppid), "command": "fslora x"}))
    with pytest.raises(output_lock.OutputLocked, match=f"PID {ppid} \\(fslora x\\)"):
        prepare_output_dir(out)
    assert lock.exists()
    with pytest.raises(output_lock.OutputLocked, match=f"PID {ppid}"):
        check_output_file(out / "x.json")
    lock.write_text("not json")   # nobody's record: taken over
    prepare_output_dir(out)
    output_lock.release_all()


def test_temp_files_are_private_to_their_writer(tmp_path):
    ppid = os.getppid()
    live = tmp_path / f"{TMP_PREFIX}{ppid}-{output_lock.process_start(ppid)}-abc"
    dead = tmp_path / f"{TMP_PREFIX}{ppid}-1-abc"          # same PID, another start time: gone
    legacy = tmp_path / f"{TMP_PREFIX}old"                 # an older fslora's: no owner recorded
    for p in (live, dead, legacy):
        p.write_text("x")
    removed = remove_stale_temp_files(tmp_path)
    assert sorted(removed) == sorted([str(dead), str(legacy)])
    assert live.exists()


def test_lock_is_reentrant_and_released(tmp_path):
    a = prepare_output_dir(tmp_path / "a")
    prepare_output_dir(a)                          # the same process again: fine
    check_output_file(tmp_path / "a" / "r.json")   # our own directory: fine
    assert len(output_lock.held_locks()) == 2
    output_lock.release_all()
    assert [p for p in os.listdir(a) if p.startswith(".")] == []
