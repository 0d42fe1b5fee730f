"""Record a command's report for the documentation site, stamped with the commit that produced it.

    python docs/tools/record_results.py verify            # runs `fslora verify` (full profile) here and now
    python docs/tools/record_results.py claims --quick    # extra arguments go to the command unchanged
    python docs/tools/record_results.py claims --workdir runs/claims-record   # resumable (see below)

Runs the command from this checkout (``python -m fslora_cli.main <command> --out <tmp> ...``) and
writes ``docs/results/<command>/record.json``::

    {"command": "fslora verify", "commit": "<sha of HEAD>", "code_modified": false,
     "recorded_utc": "...", "python": "3.11.x", "platform": "...", "exit_code": 0,
     "report": <the command's report.json, unchanged>}

plus the PNGs the command wrote. The site renders the page from that file (docs/_ext/fslora_results.py),
never by re-running anything. ``code_modified`` is true when the packages the command runs had
uncommitted changes: the stamp then names a commit the numbers did not come from, and the page says so.

``--workdir DIR`` (first, before the command's own arguments) runs the command with ``--out DIR --resume``
instead of a temporary directory, so a long recording (the full ``fslora claims`` on a busy machine)
that is interrupted continues where it stopped when run again: the command reuses each finished unit
whose fingerprint matches and recomputes the rest (results are bit-identical either way). The record
then says ``"resumed": true`` when DIR already held finished units, and its CPU and timing fields count
only the last invocation. Use it with the same commit: a unit's fingerprint names its settings, not
the code.
"""
from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "docs", "results")
COMMANDS = ("verify", "claims")
CODE_PATHS = ("fslora_ref", "theory", "llm_bridge", "flower_app", "fslora_cli", "pyproject.toml")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _out_dir(workdir):
    """A temporary directory, or ``workdir`` (kept, created if missing)."""
    if workdir is None:
        return tempfile.TemporaryDirectory()
    os.makedirs(workdir, exist_ok=True)
    return contextlib.nullcontext(os.path.abspath(workdir))


def record(command: str, extra: list, dest_root: str = RESULTS, workdir: str | None = None) -> str:
    """Run ``fslora <command> <extra>`` and write its stamped record; returns the record's path.

    With ``workdir`` the command writes there with ``--resume`` (an interrupted recording continues)."""
    commit = git("rev-parse", "HEAD")
    modified = bool(git("status", "--porcelain", "--", *CODE_PATHS))
    resumed = workdir is not None and os.path.exists(os.path.join(workdir, "runs.json"))
    with _out_dir(workdir) as out:
        argv = [sys.executable, "-m", "fslora_cli.main", command, "--out", out, *extra]
        if workdir is not None:
            argv.append("--resume")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "flower_app")]))
        proc = subprocess.run(argv, cwd=ROOT, env=env)
        report_path = os.path.join(out, "report.json")
        if not os.path.exists(report_path):
            raise SystemExit(f"fslora {command} wrote no report.json (exit code {proc.returncode})")
        with open(report_path, encoding="utf-8") as fh:
            report = json.load(fh)
        dest = os.path.join(dest_root, command)
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.makedirs(dest)
        for png in sorted(glob.glob(os.path.join(out, "*.png"))):
            shutil.copy(png, dest)
    stamped = {"command": " ".join(["fslora", command, *extra]), "commit": commit, "code_modified": modified,
               "recorded_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
               "python": platform.python_version(), "platform": platform.platform(),
               "exit_code": proc.returncode, **({"resumed": True} if resumed else {}), "report": report}
    path = os.path.join(dest, "record.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(stamped, fh, indent=1)
        fh.write("\n")
    return path


def main(argv: list) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"command must be one of {', '.join(COMMANDS)}, got {argv[0] if argv else 'nothing'!r}")
        return 2
    command, extra, workdir = argv[0], list(argv[1:]), None
    if extra and extra[0].startswith("--workdir"):
        flag = extra.pop(0)
        workdir = flag.split("=", 1)[1] if "=" in flag else (extra.pop(0) if extra else "")
        if not workdir:
            print("--workdir needs a directory")
            return 2
    print("wrote " + os.path.relpath(record(command, extra, workdir=workdir), ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
