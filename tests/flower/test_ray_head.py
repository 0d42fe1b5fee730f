"""The simulation engine's Ray head (fslora_cli/ray_head.py): the launcher writes the agents' port files
itself, so agents slower than the raylet's fixed 15 s wait no longer fail Ray's start-up.

The real-Ray tests make both agents slow on purpose (a sitecustomize on their PYTHONPATH sleeps
AGENT_DELAY s before they import anything), which is what a loaded machine does to them; the same
start without the port-file writer (the mutant) fails as Flower's own ``ray.init`` did."""
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from fslora_cli import ray_head
from fslora_cli.flower_deploy import MARK, _tool, marked_processes
from fslora_cli.ray_head import HEAD_ENV, HeadPorts, HeadStartError, head_command, start_head, write_agent_port_files

PORTS = HeadPorts(gcs=6001, node_manager=6002, object_manager=6003, metrics_export=6004, agent_listen=6005,
                  agent_grpc=6006, runtime_env_agent=6007, client_server=6008)
NODE = "ab12" * 14
AGENT_DELAY = 20   # seconds: more than the raylet's fixed 15 s wait for the agents' port files

SLOW_AGENTS = '''import os, time
try:
    argv = open("/proc/self/cmdline", "rb").read().split(b"\\0")
except OSError:
    argv = []
if any(a.endswith((b"dashboard/agent.py", b"runtime_env/agent/main.py")) for a in argv):
    time.sleep(float(os.environ["FSLORA_TEST_AGENT_DELAY"]))
'''


def session(tmp_path):
    d = tmp_path / "session_2026-01-01_00-00-00_000000_1"
    d.mkdir()
    return d


def test_no_file_is_written_before_the_gcs_has_a_session(tmp_path):
    (tmp_path / "session_2026-01-01_00-00-00_000000_1").mkdir()
    assert write_agent_port_files(str(tmp_path), PORTS) is None
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_every_port_file_the_raylet_waits_for_holds_the_port_its_agent_was_given(tmp_path):
    d = session(tmp_path)
    (d / f"gcs_server_port_{NODE}").write_text("6001")
    assert write_agent_port_files(str(tmp_path), PORTS) == str(d)
    written = {p.name: p.read_text() for p in d.iterdir()}
    assert written == {f"gcs_server_port_{NODE}": "6001", f"metrics_agent_port_{NODE}": "6006",
                       f"metrics_export_port_{NODE}": "6004", f"dashboard_agent_listen_port_{NODE}": "6005",
                       f"runtime_env_agent_port_{NODE}": "6007"}
    # the agents are started with the same ports: head_command passes each one
    cmd = head_command("ray", str(tmp_path), PORTS)
    flags = {"--port": "6001", "--metrics-export-port": "6004", "--dashboard-agent-listen-port": "6005",
             "--dashboard-agent-grpc-port": "6006", "--runtime-env-agent-port": "6007"}
    assert {f: cmd[cmd.index(f) + 1] for f in flags} == flags


def test_a_file_an_agent_already_wrote_is_left_alone(tmp_path):
    d = session(tmp_path)
    (d / f"gcs_server_port_{NODE}").write_text("6001")
    (d / f"runtime_env_agent_port_{NODE}").write_text("6007\n")
    write_agent_port_files(str(tmp_path), PORTS)
    assert (d / f"runtime_env_agent_port_{NODE}").read_text() == "6007\n"
    assert not list(d.glob("*fslora-tmp"))


@pytest.fixture
def ray_dir():
    """A short Ray temporary directory (Ray's socket paths must stay under 108 characters; tmp_path's do not)."""
    d = tempfile.mkdtemp(prefix="fslora-test-ray-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def slow_agent_env(tmp_path):
    """The environment of a head whose agents take AGENT_DELAY s to start, and a marker to stop it by."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_AGENTS)
    token = uuid.uuid4().hex
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), *sys.path]), FSLORA_TEST_AGENT_DELAY=str(AGENT_DELAY),
               **HEAD_ENV, **{MARK: token})
    yield env
    for pid in marked_processes(token):
        try:
            os.kill(pid, 9)
        except OSError:
            pass


@pytest.mark.timeout(600)   # hang guard
def test_agents_slower_than_the_raylets_wait_no_longer_fail_the_start(tmp_path, ray_dir, slow_agent_env):
    pytest.importorskip("ray")
    log = str(tmp_path / "ray-head.log")
    address = start_head(_tool("ray"), ray_dir, slow_agent_env, log, 600)
    # a driver that, like Flower's runtime, calls ray.init() with no address; its actor reports its niceness
    driver = ("import os, ray\nray.init()\n@ray.remote(num_cpus=1)\nclass A:\n    def f(self):\n"
              "        return os.nice(0)\nprint('actor niceness', ray.get(A.remote().f.remote(), timeout=500) - os.nice(0))\n"
              "ray.shutdown()\n")
    done = subprocess.run([sys.executable, "-c", driver], env=dict(slow_agent_env, RAY_ADDRESS=address),
                          capture_output=True, text=True, timeout=550)
    # HEAD_ENV reached the head's workers: no niceness added (Ray's default adds 15)
    assert "actor niceness 0\n" in done.stdout, done.stdout[-2000:] + done.stderr[-3000:]
    assert list(Path(ray_dir).glob("session_2*/logs/python-core-driver-*")), "the driver did not join the head"
    raylet = next(Path(ray_dir).glob("session_*/logs/raylet.out")).read_text()
    assert "Timed out waiting for file" not in raylet


@pytest.mark.timeout(600)   # hang guard
def test_the_same_start_without_the_port_files_fails(tmp_path, ray_dir, slow_agent_env, monkeypatch):
    """The mutant: no port files written by the launcher. The raylet gives up on the slow agents
    after 15 s and `ray start` fails as Flower's own `ray.init()` did on a loaded machine."""
    pytest.importorskip("ray")
    monkeypatch.setattr(ray_head, "write_agent_port_files", lambda temp_dir, ports: None)
    log = tmp_path / "ray-head.log"
    with pytest.raises(HeadStartError, match="ray start --head exited with code"):
        start_head(_tool("ray"), ray_dir, slow_agent_env, str(log), 600)
    raylet = next(Path(ray_dir).glob("session_*/logs/raylet.out")).read_text()
    assert "Timed out waiting for file" in raylet
