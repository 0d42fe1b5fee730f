"""Checkpoints are held against a schema: a well-formed archive whose server state lies (Adam
moments replaced or deleted, step counts out of range, FLoRA's merged weights or FlexLoRA's
products wrong), a header built to exhaust memory or the stack, a named pipe or a device in
place of the file -- each is one line, exit 2, before any round runs; the heavy ones are
measured for peak memory in a separate process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from fslora_cli.main import main

from .clitools import one_line_error
from .hostile import huge_headers, lying_states

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIM = ["simulate", "--clients", "3", "--rank", "4", "--m", "6", "--n", "4", "--batch-size", "4", "--local-steps", "2",
       "--server-optimizer", "adam", "--server-lr", "0.05", "--client-optimizer", "adamw"]
PEAK_RSS_INCREASE_LIMIT_MB = 300   # generous: the issue measured 2.5 GB for the 100 MB header before the fix


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("valid") / "run"
    assert main(SIM + ["--algorithms", "fslora,flora,flexlora", "--rounds", "1", "--out", str(out)]) == 0
    return out


def test_lying_server_states_are_refused_naming_the_part(valid_run, tmp_path, capsys):
    valid = {a: (valid_run / f"checkpoint-{a}.npz").read_bytes() for a in ("fslora", "flora", "flexlora")}
    cases = lying_states(valid, tmp_path)
    assert len(cases) == 21
    for (algorithm, name), data in cases.items():
        out = tmp_path / "run"
        out.mkdir(exist_ok=True)
        ckpt = out / f"checkpoint-{algorithm}.npz"
        ckpt.write_bytes(data)
        err = one_line_error(capsys, SIM + ["--algorithms", algorithm, "--rounds", "2", "--out", str(out), "--resume"])
        assert str(ckpt) in err and "state.extra." in err, (name, err)
        assert not (out / "history.json").exists(), name   # refused before anything ran
        ckpt.unlink()


def test_honest_checkpoint_still_resumes(valid_run, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint-fslora.npz").write_bytes((valid_run / "checkpoint-fslora.npz").read_bytes())
    assert main(SIM + ["--algorithms", "fslora", "--rounds", "2", "--out", str(out), "--resume"]) == 0


# runs `fslora` on each argv in this one process and reports exit code, stderr and peak RSS after each
MEASURE = """
import contextlib, io, json, resource, sys
from fslora_cli.main import main
def peak_mb():  # VmHWM: this process's own high-water mark (ru_maxrss would include the forking parent's)
    try:
        with open("/proc/self/status") as fh:
            return next(int(l.split()[1]) for l in fh if l.startswith("VmHWM:")) / 1024
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
rows = [{"name": "baseline (imports)", "peak_mb": peak_mb()}]
for name, argv in json.loads(sys.stdin.read()):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    rows.append({"name": name, "code": code, "err": err.getvalue(), "peak_mb": peak_mb()})
print(json.dumps(rows))
"""


@pytest.mark.timeout(900)   # hang guard only (a named pipe used to block --resume for ever)
def test_heavy_hostile_files_bounded_memory_no_hang(valid_run, tmp_path):
    valid = (valid_run / "checkpoint-fslora.npz").read_bytes()
    jobs = []
    files = dict(huge_headers(valid))
    files["named pipe"] = None
    files["symlink to /dev/zero"] = None
    for i, (name, data) in enumerate(files.items()):
        out = tmp_path / f"case{i}"
        out.mkdir()
        ckpt = out / "checkpoint-fslora.npz"
        if name == "named pipe":
            os.mkfifo(ckpt)
        elif name == "symlink to /dev/zero":
            os.symlink("/dev/zero", ckpt)
        else:
            ckpt.write_bytes(data)
        jobs.append((name, SIM + ["--algorithms", "fslora", "--rounds", "2", "--out", str(out), "--resume"]))
    del files
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "flower_app")]))
    done = subprocess.run([sys.executable, "-c", MEASURE], input=json.dumps(jobs), capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=800)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    baseline = rows[0]["peak_mb"]
    for row in rows[1:]:
        lines = row["err"].strip().splitlines()
        assert row["code"] == 2 and len(lines) == 1 and lines[0].startswith("fslora simulate: error:"), row
        assert row["peak_mb"] - baseline < PEAK_RSS_INCREASE_LIMIT_MB, row
    print("\n".join(f"{r['name']}: peak RSS {r['peak_mb']:.0f} MB; {r.get('err', '').strip()[-90:]}" for r in rows))
