"""The setup installs a notebook server: `make lab` (JupyterLab, pinned in pyproject.toml) opens the
notebooks, works offline, and starts kernels of this environment's Python."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JUPYTER = os.path.join(os.path.dirname(sys.executable), "jupyter")
TOKEN = "fslora-test-token"


def test_the_setup_pins_jupyterlab_and_make_lab_opens_the_notebooks():
    pyproject = open(os.path.join(ROOT, "pyproject.toml")).read()
    extra = re.search(r"^notebooks = \[(.*)\]$", pyproject, re.M).group(1)
    assert re.search(r'"jupyterlab==[0-9.]+"', extra), "the notebooks extra must pin jupyterlab"
    makefile = open(os.path.join(ROOT, "Makefile")).read()
    # the executed notebooks (with every output), not the stripped copies the tests run
    assert re.search(r"^lab: \$\(STAMP\)\n\tPYTHONPATH=\$\(CURDIR\)/notebooks[^\n]*? \$\(VENV\)/bin/jupyter lab --notebook-dir=docs/notebooks", makefile, re.M)
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "make lab" in readme


def _get(url, method="GET"):
    req = urllib.request.Request(url, method=method, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return resp.status, resp.read().decode()


def _kernel_pythons(server_pid, wait=300.0) -> list:
    """The interpreters of the ipykernel processes the server started (Linux /proc)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    argv = fh.read().decode().split("\0")
            except (OSError, ValueError, IndexError):
                continue
            if ppid == server_pid and any("ipykernel" in a for a in argv):
                found.append(os.path.realpath(argv[0]))
        if found:
            return found
        time.sleep(0.25)
    return []


@pytest.mark.timeout(900)   # hang guard for a loaded machine
def test_jupyterlab_serves_the_notebooks_offline_with_this_python(tmp_path):
    if not os.path.exists(JUPYTER):
        pytest.fail(f"{JUPYTER} is missing: the setup (pip install -e .[all]) must install JupyterLab")
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"))
    argv = [JUPYTER, "lab", "--no-browser", "--ip=127.0.0.1", "--port=0", f"--IdentityProvider.token={TOKEN}",
            f"--notebook-dir={os.path.join(ROOT, 'docs', 'notebooks')}", "--ServerApp.shutdown_no_activity_timeout=120"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    log = open(tmp_path / "server.log", "w+")
    server = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = None
        for _ in range(240):                     # up to 60 s for the server to listen
            log.seek(0)
            found = re.search(r"(http://127\.0\.0\.1:\d+)/lab", log.read())
            if found or server.poll() is not None:
                url = found and found.group(1)
                break
            time.sleep(0.25)
        log.seek(0)
        assert url, f"jupyter lab did not start:\n{log.read()[-2000:]}"
        status, page = _get(url + "/lab")
        assert status == 200 and "JupyterLab" in page
        _, listing = _get(url + "/api/contents")
        names = {c["name"] for c in json.loads(listing)["content"]}
        assert {"01_sketching_operator.ipynb", "05_real_llm.ipynb"} <= names
        status, body = _get(url + "/api/kernels", method="POST")
        kernel = json.loads(body)
        assert status == 201 and kernel["name"] == "python3"
        assert _kernel_pythons(server.pid) == [os.path.realpath(sys.executable)]
        _get(url + f"/api/kernels/{kernel['id']}", method="DELETE")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
