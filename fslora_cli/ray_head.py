"""The simulation engine's Ray head, started by the launcher so that slow Ray agents cannot fail the run.

Flower's simulation runtime calls ``ray.init()`` with no address. On a loaded machine that start-up
fails: Ray 2.55's raylet gives its two Python agents (dashboard agent, runtime-env agent) a fixed
15 s to write their port files (``WaitForPersistedPort`` with its default timeout, called in
``node_manager.cc``; ``RAY_agent_register_timeout_ms`` does not reach it) and aborts otherwise, and
``ray.init`` gives the raylet a fixed 30 s to register (``ray/_private/node.py``,
``raylet_start_wait_time_s = 30``). The agents spend those seconds importing Python; under load that
takes longer.

What is done instead: the launcher starts the head itself (``ray start --head``) with every agent port
fixed in advance, and writes the agents' port files itself as soon as the head's session directory
and node id exist (the GCS writes ``gcs_server_port_<node id>`` before the raylet starts). The raylet
then finds the ports at once and registers within seconds; the agents come up when they come up
(each rewrites its file with the same port). Flower's ``ray.init()`` connects to this head through
``RAY_ADDRESS`` instead of starting a node of its own, so its 30 s wait is not run either. The head
runs with Ray's defaults otherwise (CPUs detected as ``ray.init`` would) but for :data:`HEAD_ENV`
and no dashboard, and is stopped with the deployment (its processes carry the deployment's marker).

What is left: ``ray start`` still waits 30 s for the raylet to register, which now only needs the raylet
itself (a C++ process) to start; a machine too loaded for that still fails, and the launcher's
retry (:mod:`fslora_cli.flower_retry`) remains.
"""
from __future__ import annotations

import glob
import os
import socket
import subprocess
import threading
from dataclasses import dataclass

# the files the raylet waits for, one per agent port, each named <name>_<node id hex>
AGENT_PORT_FILES = ("metrics_agent_port", "metrics_export_port", "dashboard_agent_listen_port",
                    "runtime_env_agent_port")
GCS_PORT_FILE = "gcs_server_port"
POLL_SECONDS = 0.05
# the environment of the head's processes (and of Flower's runtime): no usage statistics (no network);
# no metrics collection (nothing reads Ray's metrics); the workers (the ClientApp actors) at the
# priority of every other process: Ray's default, nice 15, starves them on a loaded machine (measured:
# the first replies took ~4 min at load 15-20, and a run missed --discovery-timeout)
HEAD_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_enable_metrics_collection": "0", "RAY_worker_niceness": "0"}


@dataclass(frozen=True)
class HeadPorts:
    """The ports the head's processes listen on, all chosen before it starts.

    Parameters
    ----------
    gcs, node_manager, object_manager : int
        The GCS (the head's address), the raylet's node manager and object manager.
    metrics_export, agent_listen, agent_grpc, runtime_env_agent : int
        The dashboard agent's metrics export, HTTP and gRPC ports; the runtime-env agent's port.
    client_server : int
        Ray Client's server (started on a head whenever its dependencies, grpc, are installed).
    """

    gcs: int
    node_manager: int
    object_manager: int
    metrics_export: int
    agent_listen: int
    agent_grpc: int
    runtime_env_agent: int
    client_server: int

    def agent_port_files(self) -> dict:
        """The port each agent port file must hold.

        Returns
        -------
        dict
            ``{file name prefix: port}`` for every name of :data:`AGENT_PORT_FILES`.
        """
        return {"metrics_agent_port": self.agent_grpc, "metrics_export_port": self.metrics_export,
                "dashboard_agent_listen_port": self.agent_listen, "runtime_env_agent_port": self.runtime_env_agent}


def free_ports() -> HeadPorts:
    """Eight distinct TCP ports on 127.0.0.1 that were free a moment ago (held open together while chosen).

    Returns
    -------
    HeadPorts
        The ports, in field order.
    """
    socks = [socket.socket() for _ in range(8)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return HeadPorts(*(s.getsockname()[1] for s in socks))
    finally:
        for s in socks:
            s.close()


def head_command(ray: str, temp_dir: str, ports: HeadPorts) -> list:
    """The ``ray start --head`` command of a head on 127.0.0.1 with every port fixed.

    Parameters
    ----------
    ray : str
        The ``ray`` console script.
    temp_dir : str
        Ray's temporary directory for this head (session directory, sockets, logs).
    ports : HeadPorts
        The ports to listen on.

    Returns
    -------
    list of str
        The command line.
    """
    return [ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(ports.gcs),
            "--node-manager-port", str(ports.node_manager), "--object-manager-port", str(ports.object_manager),
            "--metrics-export-port", str(ports.metrics_export), "--dashboard-agent-listen-port",
            str(ports.agent_listen), "--dashboard-agent-grpc-port", str(ports.agent_grpc),
            "--runtime-env-agent-port", str(ports.runtime_env_agent), "--ray-client-server-port",
            str(ports.client_server), "--include-dashboard=false", "--disable-usage-stats", "--temp-dir", temp_dir]


def write_agent_port_files(temp_dir: str, ports: HeadPorts) -> str | None:
    """Write the agents' port files of the head whose GCS has started in ``temp_dir``.

    The node id is read from the name of the GCS's port file (``temp_dir`` holds one session). A
    file an agent has already written is left as it is (it holds the same port).

    Parameters
    ----------
    temp_dir : str
        The head's Ray temporary directory.
    ports : HeadPorts
        The ports the head was started with.

    Returns
    -------
    str or None
        The session directory written to; None if no GCS port file exists yet (nothing written).
    """
    found = sorted(glob.glob(os.path.join(temp_dir, "session_*", f"{GCS_PORT_FILE}_*")))
    if not found:
        return None
    session_dir = os.path.dirname(found[0])
    node_id = os.path.basename(found[0])[len(GCS_PORT_FILE) + 1:]
    for name, port in ports.agent_port_files().items():
        path = os.path.join(session_dir, f"{name}_{node_id}")
        if os.path.exists(path):
            continue
        tmp = f"{path}.fslora-tmp"
        with open(tmp, "w") as fh:
            fh.write(str(port))
        os.replace(tmp, path)   # the raylet never reads a half-written port
    return session_dir


class HeadStartError(RuntimeError):
    """``ray start --head`` failed or did not finish in time (one line, naming its log)."""


def start_head(ray: str, temp_dir: str, env: dict, log_path: str, timeout: float) -> str:
    """Start a Ray head on 127.0.0.1 and write its agents' port files as soon as it has a session.

    Parameters
    ----------
    ray : str
        The ``ray`` console script.
    temp_dir : str
        Ray's temporary directory for this head, holding no other session (created if missing;
        short: Ray's socket paths must stay under 108 characters).
    env : dict
        The environment of ``ray start`` and so of every process of the head.
    log_path : str
        Where ``ray start``'s output goes (appended to).
    timeout : float
        Seconds ``ray start`` may take (a hang guard; its own waits end it sooner).

    Returns
    -------
    str
        The head's address, ``127.0.0.1:<gcs port>`` (what ``RAY_ADDRESS`` must hold).

    Raises
    ------
    HeadStartError
        If ``ray start`` exits non-zero or runs past ``timeout``; the head's processes may be left
        running (the caller stops them).
    """
    os.makedirs(temp_dir, exist_ok=True)
    ports = free_ports()
    done = threading.Event()

    def write_when_ready():
        while not done.is_set() and write_agent_port_files(temp_dir, ports) is None:
            done.wait(POLL_SECONDS)

    writer = threading.Thread(target=write_when_ready, name="ray-agent-port-files", daemon=True)
    writer.start()
    try:
        with open(log_path, "a") as log:
            code = subprocess.run(head_command(ray, temp_dir, ports), stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        raise HeadStartError(f"ray start --head did not finish within {timeout:g} s; see {log_path}") from None
    finally:
        done.set()
        writer.join()
    if code != 0:
        raise HeadStartError(f"ray start --head exited with code {code}; see {log_path}")
    return f"127.0.0.1:{ports.gcs}"
