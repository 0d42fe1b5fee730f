"""The local deployment is secure by default: TLS with a throw-away CA, SuperNode authentication
admitting only the deployment's own keys, credentials private to the user; and it dies with the
launcher, even on kill -9.

What Flower 1.42 gives no control over (a local process holding the CA certificate may use the
Control API: there is no user authentication without Flower's OIDC plugin) is stated in the README;
these tests check what is refused.
"""
import os
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from fslora_cli.flower_deploy import LocalDeployment, _tool, marked_processes
from fslora_cli.flower_pki import make_credentials, node_key_pair

pytestmark = pytest.mark.timeout(300)
LIMITS = dict(start_timeout=90, stop_timeout=15)


def test_credentials_are_private_and_the_server_certificate_chains_to_the_ca(tmp_path):
    from cryptography import x509
    creds = make_credentials(str(tmp_path / "creds"), 2)
    assert stat.S_IMODE(os.stat(creds.directory).st_mode) == 0o700
    for path in (creds.ca_cert, creds.server_cert, creds.server_key, *creds.node_keys, *creds.node_public):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    ca = x509.load_pem_x509_certificate(open(creds.ca_cert, "rb").read())
    server = x509.load_pem_x509_certificate(open(creds.server_cert, "rb").read())
    server.verify_directly_issued_by(ca)               # raises if the chain is broken
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert len(set(open(p).read() for p in creds.node_public)) == 2   # one key per node
    with pytest.raises(FileExistsError):               # never reuses (or loosens) an existing directory
        make_credentials(creds.directory, 1)


def _foreign_flwr_ls(port, connection_lines):
    """`flwr ls` from another FLWR_HOME (a foreign local user) against the deployment's port."""
    home = tempfile.mkdtemp()
    with open(os.path.join(home, "config.toml"), "w") as fh:
        fh.write(f'[superlink]\ndefault = "x"\n\n[superlink.x]\naddress = "127.0.0.1:{port}"\n{connection_lines}')
    env = dict(os.environ, FLWR_HOME=home)
    return subprocess.run([_tool("flwr"), "ls", "x", "--format", "json"], env=env, capture_output=True, text=True,
                          timeout=120)


def test_foreign_supernodes_and_plain_clients_are_refused(tmp_path):
    logs = tmp_path / "logs"
    with LocalDeployment(1, str(logs), **LIMITS) as dep:
        assert not dep.insecure and dep.credentials is not None
        own = dep._flwr(["ls", "fslora-local", "--format", "json"], timeout=120)   # the launcher's own CLI works
        assert '"success": true' in own
        # a SuperNode with a key of its own (not registered by the launcher), and one without TLS
        evil_dir = tempfile.mkdtemp()
        evil_key, _ = node_key_pair(evil_dir, "evil")
        evil_log = os.path.join(evil_dir, "evil.log")
        with open(evil_log, "w") as log:     # a file, not a pipe: its SuperExec child outlives it briefly
            unknown = subprocess.Popen(dep.node_command(0, key=evil_key), env=dep.env, stdout=log,
                                       stderr=subprocess.STDOUT)
        plain_cmd = dep.node_command(0)
        plain_cmd[1:5] = ["--insecure"]
        plain = subprocess.Popen(plain_cmd, env=dep.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            unknown.wait(timeout=120)                          # hang guard: it is refused and exits
            assert unknown.returncode != 0
            assert "Failed to activate SuperNode" in open(evil_log, errors="replace").read()
            assert dep.online_nodes() == 1                     # only the deployment's own node
            assert plain.poll() is None or plain.returncode != 0   # still retrying: it never got in
        finally:
            for p in (unknown, plain):
                if p.poll() is None:
                    p.kill()
                    p.wait()
        # foreign `flwr ls`: plain HTTP is refused, TLS without the deployment's CA is refused
        for lines in ("insecure = true\n", ""):
            done = _foreign_flwr_ls(dep.port, lines)
            assert '"success": false' in done.stdout and "unavailable" in done.stdout, done.stdout
            assert '"runs"' not in done.stdout
        token = dep.token
    assert marked_processes(token) == []


LAUNCHER = """
import sys, time
from fslora_cli.flower_deploy import LocalDeployment
dep = LocalDeployment(2, sys.argv[1], start_timeout=90)
dep.start()
print(dep.token, flush=True)
time.sleep(600)
"""


def test_kill_9_of_the_launcher_leaves_no_process_behind(tmp_path):
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path / "logs")], stdout=subprocess.PIPE,
                                text=True, env=dict(os.environ))
    token = launcher.stdout.readline().strip()
    assert token, "the launcher did not start its deployment"
    before = marked_processes(token)
    assert len(before) >= 1 + 2 * 2                      # teeth: SuperLink, SuperNodes and their SuperExecs
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 60                     # hang guard only
    while marked_processes(token) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert marked_processes(token) == []
    assert not any(os.path.exists(f"/proc/{pid}") and open(f"/proc/{pid}/stat").read().split()[2] != "Z"
                   for pid in before)


@pytest.mark.parametrize("flag", [[], ["--insecure"]])
def test_the_command_is_secure_unless_told_otherwise(tmp_path, capsys, monkeypatch, flag):
    from fslora_cli import flower_deploy as deploy
    from fslora_cli.main import main
    from inprocess import InProcessDeployment
    seen = []

    class Recording(InProcessDeployment):
        def __init__(self, n_nodes, log_dir, **kw):
            seen.append(kw.get("insecure"))
            super().__init__(n_nodes, log_dir, **kw)
    monkeypatch.setattr(deploy, "LocalDeployment", Recording)
    code = main(["flower", "simulate", "--clients", "2", "--budgets", "2,4", "--rank", "4", "--m", "6", "--n", "5",
                 "--rounds", "1", "--algorithms", "fslora", "--out", str(tmp_path / "o"), *flag])
    err = capsys.readouterr().err
    assert code == 0, err
    assert seen == [bool(flag)]
    assert ("warning: --insecure" in err) == bool(flag)


def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError):
                pass
    return found


def test_a_killed_superlink_is_recorded_as_failed(tmp_path):
    import json
    out = tmp_path / "run"
    cli = subprocess.Popen([sys.executable, "-m", "fslora_cli.main", "flower", "simulate", "--clients", "2",
                            "--budgets", "2,4", "--rank", "4", "--m", "6", "--n", "5", "--rounds", "400",
                            "--algorithms", "fslora", "--out", str(out), "--start-timeout", "90"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ledger = out / "flower.json"
    deadline = time.monotonic() + 200                    # hang guard
    while time.monotonic() < deadline and cli.poll() is None:
        try:
            if json.loads(ledger.read_text())["runs"][-1]["rounds"]:
                break
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.25)
    superlinks = [p for p in _children(cli.pid) if b"flower-superlink" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert len(superlinks) == 1, "the run did not reach round 1"
    os.kill(superlinks[0], 9)
    _, err = cli.communicate(timeout=200)
    assert cli.returncode == 1, err
    assert "the SuperLink (pid" in err and "was killed by signal 9" in err
    run = json.loads(ledger.read_text())["runs"][-1]
    assert run["status"] == "failed" and "the SuperLink" in run["error"] and run["exit-code"] == 1


def _deployment_home(pid):
    """The private directory (FLWR_HOME) of the deployment the `fslora flower` process ``pid`` runs now."""
    for child in _children(pid):
        try:
            if b"flower-superlink" in open(f"/proc/{child}/cmdline", "rb").read():
                env = open(f"/proc/{child}/environ", "rb").read().split(b"\0")
                return next(v.split(b"=", 1)[1].decode() for v in env if v.startswith(b"FLWR_HOME="))
        except (OSError, StopIteration):
            pass
    return None


def _state(pid):
    """The kernel's state letter of ``pid`` ("Z": a zombie), or "" if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def _deployment_token(pid):
    """The marker token of the deployment the `fslora flower` process ``pid`` runs now (its SuperLink's)."""
    from fslora_cli.flower_deploy import MARK
    for child in _children(pid):
        try:
            if b"flower-superlink" in open(f"/proc/{child}/cmdline", "rb").read():
                env = open(f"/proc/{child}/environ", "rb").read().split(b"\0")
                return next(v.split(b"=", 1)[1].decode() for v in env if v.startswith(MARK.encode() + b"="))
        except (OSError, StopIteration):
            pass
    return None


@pytest.mark.timeout(900)   # hang guard: on a loaded machine the command may start Ray more than once
def test_kill_9_during_a_simulation_engine_run_leaves_no_process_behind(tmp_path):
    """kill -9 of `fslora flower simulate --engine simulation` in a round: the simulation engine's Ray
    processes (GCS, raylet, workers) go too. (The command runs the job again in a fresh deployment if
    Ray's node missed its start-up window on a loaded machine; the run killed is the one training.)"""
    import json
    pytest.importorskip("ray")
    out = tmp_path / "run"
    with open(tmp_path / "stderr.txt", "w") as err:
        cli = subprocess.Popen([sys.executable, "-m", "fslora_cli.main", "flower", "simulate", "--engine", "simulation",
                                "--clients", "3", "--rank", "4", "--m", "6", "--n", "5", "--rounds", "400",
                                "--algorithms", "fslora", "--out", str(out), "--start-timeout", "300"],
                               stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 800                     # hang guard
    while time.monotonic() < deadline and cli.poll() is None:
        try:
            if json.loads((out / "flower.json").read_text())["runs"][-1]["rounds"]:
                break
        except (OSError, ValueError, KeyError, IndexError):
            pass
        time.sleep(0.5)
    token = _deployment_token(cli.pid)
    assert token, f"the command is not running a deployment (exit {cli.poll()}): {(tmp_path / 'stderr.txt').read_text()}"
    before = marked_processes(token)
    names = [open(f"/proc/{p}/cmdline", "rb").read() for p in before if os.path.exists(f"/proc/{p}")]
    assert any(b"ray" in n for n in names), "no Ray process found: the run did not start on the simulation engine"
    # the Ray head's agents rename themselves, which can hide the marker: they are found by their open
    # files in the deployment's directory (left alone, they outlive the raylet for a minute or more)
    from fslora_cli.flower_deploy import processes_using
    home = _deployment_home(cli.pid)
    agents = [p for p in processes_using(home) if b"Agent" in open(f"/proc/{p}/cmdline", "rb").read()]
    assert len(agents) == 2, agents
    cli.kill()
    cli.wait()
    deadline = time.monotonic() + 120                     # hang guard only
    while marked_processes(token) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert marked_processes(token) == []
    assert [p for p in agents if os.path.exists(f"/proc/{p}") and _state(p) != "Z"] == []
