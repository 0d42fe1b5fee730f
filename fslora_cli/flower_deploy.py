"""A real Flower deployment on 127.0.0.1, started and stopped as one unit.

One ``flower-superlink`` and one ``flower-supernode`` per client (``--node-config
"partition-id=i num-partitions=N"``), on free ports, with a temporary ``FLWR_HOME``, telemetry,
update checks and runtime dependency installation off (with it on, the SuperLink runs
``uv sync`` against the network and the run dies offline). ``run`` submits the app with
``flwr run --stream`` and reads the run's final status from ``flwr ls`` (``flwr run`` exits 0
even when the ServerApp fails). ``stop`` ends every process the deployment started, by process
group, SIGTERM then SIGKILL; the processes Flower spawns itself (SuperExec, ServerApp, ClientApps,
some in sessions of their own) carry a marker in their environment, so none is missed.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass

# The Flower app folder that `flwr run` ships (flower_app/ in a clone of fslora): the one place its
# path is known. It is not an installed package, so the command imports its run-config module from there.
APP_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "flower_app")


def app_module(name: str):
    """``fslora_flower.<name>`` from APP_DIR (``settings``, ``rounds``: what the command shares with the app)."""
    import importlib
    if not os.path.isdir(os.path.join(APP_DIR, "fslora_flower")):
        raise ImportError(f"the Flower app folder {APP_DIR} is missing (fslora flower runs from a clone of fslora)")
    if APP_DIR not in sys.path:
        sys.path.insert(0, APP_DIR)
    import flwr  # noqa: F401  (a clear "missing dependency" if the flower extra is not installed)
    return importlib.import_module(f"fslora_flower.{name}")

ENV = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1",
       "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1"}
MARK = "FSLORA_FLOWER_DEPLOYMENT"
OUTPUT_TAIL = 200   # lines of a run's streamed output kept in its RunResult
CONNECTION = "fslora-local"
RAY_HEAD_START_ATTEMPTS = 2     # a failed `ray start` costs ~30 s, not a whole deployment
RAY_HEAD_START_TIMEOUT = 600.0  # hang guard only: ray start's own waits end it sooner


def die_with_parent() -> None:
    """In a child between fork and exec: have the kernel SIGKILL it when the process that started it
    dies, however it dies (kill -9 included). Linux prctl(PR_SET_PDEATHSIG); a no-op elsewhere. The
    processes Flower spawns in turn are covered by the watchdog (``fslora_cli.flower_watchdog``)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class DeploymentError(RuntimeError):
    """The deployment did not start, run or stop as it should (one line, naming the part)."""


@dataclass
class RunResult:
    run_id: str
    status: str          # e.g. "finished:completed", "finished:failed"
    details: str         # Flower's status details (the ServerApp's exception when it failed)
    seconds: float       # wall time of `flwr run --stream`
    traffic: dict        # the SuperLink's per-run counters: inbound-bytes, outbound-bytes, total-bytes
    output: str = ""     # the last OUTPUT_TAIL lines `flwr run --stream` showed (the engine's errors among them)

    @property
    def ok(self) -> bool:
        return self.status == "finished:completed"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tool(name: str) -> str:
    """Flower's console script next to this interpreter (the venv's), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    found = here if os.path.exists(here) else shutil.which(name)
    if not found:
        raise DeploymentError(f"{name} not found: pip install 'fslora[flower]' (flwr==1.42.0)")
    return found


def marked_processes(token: str | None) -> list:
    """PIDs of live (non-zombie) processes whose environment carries the marker of deployment
    ``token`` (of any fslora deployment if None). Linux (/proc) only; elsewhere []."""
    needle = f"{MARK}={token or ''}".encode()
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read().split(b"\0")
            if not any(v == needle if token else v.startswith(needle) for v in env):
                continue
            with open(f"/proc/{entry}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except OSError:
            continue
        found.append(int(entry))
    return found


def processes_using(path: str) -> list:
    """PIDs of live processes with a file open under ``path`` (Linux /proc only; elsewhere []).

    The Ray head's agents rename themselves (``ray::DashboardAgent``), which overwrites the start of
    their environment in /proc, so the deployment's marker may not show there; their open log files
    in the head's directory do."""
    prefix = os.path.join(os.path.realpath(path), "")
    found = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{entry}/fd/{fd}")
            except OSError:
                continue
            if target.startswith(prefix):
                found.append(int(entry))
                break
    return found


class LocalDeployment:
    """SuperLink + ``n_nodes`` SuperNodes on 127.0.0.1; a context manager that stops them all.

    log_dir: where each process's output goes (superlink.log, supernode-<i>.log, run.log).
    start_timeout: seconds for the SuperLink to listen and every SuperNode to register;
    stop_timeout: seconds for every process to be gone (SIGKILL after stop_grace).
    """

    def __init__(self, n_nodes: int, log_dir: str, *, start_timeout: float = 60.0, stop_grace: float = 5.0,
                 stop_timeout: float = 10.0, insecure: bool = False, node_configs=None):
        if n_nodes < 1:
            raise ValueError(f"n_nodes must be >= 1, got {n_nodes}")
        self.insecure = insecure
        # extra --node-config entries per SuperNode, e.g. 'budget=4 data="/data/partition-0.npz"'
        self.node_configs = list(node_configs) if node_configs is not None else [""] * n_nodes
        if len(self.node_configs) != n_nodes:
            raise ValueError(f"node_configs must hold {n_nodes} entries (one per SuperNode), got {len(self.node_configs)}")
        self.credentials = None
        self.n_nodes, self.log_dir = n_nodes, log_dir
        self.start_timeout, self.stop_grace, self.stop_timeout = start_timeout, stop_grace, stop_timeout
        self.token = uuid.uuid4().hex
        self.home = None
        self.superlink = None
        self.watchdog = None
        self.nodes = []         # Popen per SuperNode, index = partition-id
        self.node_logs = {}     # partition-id -> log name of its current SuperNode
        self._starts = {}
        self._procs = []        # every Popen we started, in start order
        self.start_seconds = None

    # -- lifecycle ------------------------------------------------------------------------------
    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        deadline = t0 + self.start_timeout
        self._prepare_home()
        self.port = free_port()
        if self.insecure:
            security, connection = ["--insecure"], "insecure = true\n"
        else:
            from .flower_pki import make_credentials
            creds = self.credentials = make_credentials(os.path.join(self.home, "credentials"), self.n_nodes)
            security = ["--ssl-certfile", creds.server_cert, "--ssl-keyfile", creds.server_key,
                        "--ssl-ca-certfile", creds.ca_cert, "--enable-supernode-auth"]
            connection = f'root-certificates = "{creds.ca_cert}"\n'
        self.superlink = self._spawn("superlink", [_tool("flower-superlink"), *security, "--host", "127.0.0.1",
                                                   "--port", str(self.port)])
        self._wait(lambda: self._listening(self.port), deadline, "the SuperLink did not listen", "superlink")
        with open(os.path.join(self.home, "config.toml"), "w") as fh:
            fh.write(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                     f'address = "127.0.0.1:{self.port}"\n{connection}')
        if not self.insecure:
            self._register_nodes(deadline)
        self.nodes = [self._spawn_node(i) for i in range(self.n_nodes)]
        for i in range(self.n_nodes):
            self._wait(lambda: self._registered(i), deadline, f"SuperNode {i} did not register", self.node_logs[i])
        self.start_seconds = time.monotonic() - t0

    def _prepare_home(self) -> None:
        """A private temporary FLWR_HOME, the deployment's environment and its watchdog."""
        os.makedirs(self.log_dir, exist_ok=True)
        self.home = tempfile.mkdtemp(prefix="fslora-flwr-home-")
        # os.environ carries FSLORA_OUTPUT_LOCK_HOLDER (fslora_ref.output_lock) once `fslora flower` has
        # locked --out: the ServerApp, a grandchild, writes there as the lock holder's delegate
        self.env = dict(os.environ, FLWR_HOME=self.home, **ENV, **{MARK: self.token})
        # the SuperLink and SuperNodes start flower-superexec / flwr-*app by name
        tools = os.path.dirname(_tool("flower-superlink"))
        self.env["PATH"] = tools + os.pathsep + self.env.get("PATH", "")
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            self.env.setdefault(var, "1")   # N ClientApps share this machine's cores
        watch_env = {k: v for k, v in self.env.items() if k != MARK}
        self.watchdog = subprocess.Popen([sys.executable, "-m", "fslora_cli.flower_watchdog", str(os.getpid()),
                                          self.token, self.home], env=watch_env, start_new_session=True,
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def stop(self) -> float:
        """Stop everything this deployment started within ``stop_timeout`` seconds (SIGTERM, then
        SIGKILL for what is left after ``stop_grace``); returns the seconds it took. Raises
        DeploymentError if any process is still alive at the deadline."""
        t0 = time.monotonic()
        deadline = t0 + self.stop_timeout
        groups = [p.pid for p in reversed(self._procs)]
        for sig, until in ((signal.SIGTERM, min(t0 + self.stop_grace, deadline - 2.0)), (signal.SIGKILL, deadline)):
            for pgid in groups:
                self._signal(pgid, sig, group=True)
            for pid in marked_processes(self.token):  # Flower's own children in sessions of their own
                self._signal(pid, sig)
            while time.monotonic() < until and self._remaining():
                time.sleep(0.05)
            if not self._remaining():
                break
        left = self._remaining()
        self._keep_logs()
        if self.home:
            shutil.rmtree(self.home, ignore_errors=True)
        if self.watchdog is not None and self.watchdog.poll() is None:
            self.watchdog.terminate()
            self.watchdog.wait(timeout=5)
        if left:
            raise DeploymentError(f"processes still running {self.stop_timeout:g} s after stop: {left}")
        return time.monotonic() - t0

    def _keep_logs(self) -> None:
        """Copy what must outlive the private directory into log_dir (called once the processes are gone)."""

    def _remaining(self) -> list:
        """PIDs of processes of this deployment still alive (our children are reaped here)."""
        alive = [p.pid for p in self._procs if p.poll() is None]
        return sorted(set(alive + marked_processes(self.token)))

    def kill_node(self, i: int, sig=signal.SIGKILL) -> None:
        """Kill SuperNode ``i`` and its process group (fault injection)."""
        self._signal(self.nodes[i].pid, sig, group=True)
        self.nodes[i].wait(timeout=10)

    def restart_node(self, i: int) -> None:
        """Start a new SuperNode for partition ``i`` (after kill_node) and wait for it to register.
        With authentication it gets a key of its own, registered first (the SuperLink refuses a
        second activation of the dead node's key until it has noticed that node is gone)."""
        deadline = time.monotonic() + self.start_timeout
        if not self.insecure:
            from .flower_pki import node_key_pair
            private, public = node_key_pair(self.credentials.directory, f"node-{i}-restart{self._starts.get(i, 0) + 1}")
            self.credentials.node_keys[i], self.credentials.node_public[i] = private, public
            self._register_nodes(deadline, which=[i])
        self.nodes[i] = self._spawn_node(i)
        self._wait(lambda: self._registered(i), deadline, f"SuperNode {i} did not register", self.node_logs[i])

    # -- running an app ---------------------------------------------------------------------------
    def run(self, app_dir: str, run_config: dict, *, timeout: float | None = None, on_line=None) -> RunResult:
        """``flwr run app_dir`` with ``run_config``; waits for the run to end (or ``timeout``
        seconds, then stops it and raises DeploymentError) and returns its final status."""
        import tomli_w
        cfg = os.path.join(self.home, f"run-config-{uuid.uuid4().hex[:8]}.toml")
        with open(cfg, "wb") as fh:
            tomli_w.dump(run_config, fh)
        t0 = time.monotonic()
        proc = subprocess.Popen([_tool("flwr"), "run", os.path.abspath(app_dir), CONNECTION, "--run-config", cfg,
                                 "--stream"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self.env, start_new_session=True, preexec_fn=die_with_parent)
        self._procs.append(proc)
        run_id, lines = None, []
        log = open(os.path.join(self.log_dir, "run.log"), "a")
        try:
            for line in self._lines(proc, None if timeout is None else t0 + timeout):
                log.write(line)
                lines.append(line)
                if run_id is None and line.startswith("Successfully started run "):
                    run_id = line.split()[-1]
                elif on_line is not None:
                    on_line(line)
        except TimeoutError:
            if run_id is not None:
                self._flwr(["stop", run_id, CONNECTION], timeout=30)
            raise DeploymentError(f"the run did not finish within {timeout:g} s (logs: {self.log_dir})") from None
        finally:
            log.close()
        proc.wait()
        seconds = time.monotonic() - t0
        self.check_superlink()
        if run_id is None:
            tail = " ".join("".join(lines[-5:]).split())[-300:]
            raise DeploymentError(f"flwr run did not start a run (exit {proc.returncode}): {tail}")
        info = self.run_info(run_id)
        return RunResult(run_id, info.get("status", "unknown"), info.get("status-details", ""), seconds,
                         info.get("network-traffic", {}), "".join(lines[-OUTPUT_TAIL:]))

    def check_superlink(self) -> None:
        """DeploymentError if the SuperLink process has exited (crashed or killed), saying how."""
        code = None if self.superlink is None else self.superlink.poll()
        if code is not None:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            raise DeploymentError(f"the SuperLink (pid {self.superlink.pid}) {how} during the run; see "
                                  f"{os.path.join(self.log_dir, 'superlink.log')}")

    def run_info(self, run_id: str) -> dict:
        """The run's entry in ``flwr ls --run-id`` (status, status-details, network-traffic, ...)."""
        out = self._flwr(["ls", CONNECTION, "--run-id", run_id, "--format", "json"], timeout=60)
        runs = json.loads(out).get("runs", [])
        return runs[0] if runs else {}

    def online_nodes(self) -> int:
        """How many SuperNodes the SuperLink reports online."""
        try:
            out = self._flwr(["supernode", "ls", CONNECTION, "--format", "json"], timeout=30)
            return sum(n.get("status") == "online" for n in json.loads(out).get("nodes", []))
        except (DeploymentError, ValueError):
            return 0

    # -- internals -----------------------------------------------------------------------------------
    def _register_nodes(self, deadline, which=None) -> None:
        """Admit this deployment's SuperNode keys (of the nodes ``which``, default all), and only them
        (``flwr supernode register``, all at once)."""
        which = range(self.n_nodes) if which is None else which
        procs = {i: subprocess.Popen([_tool("flwr"), "supernode", "register", self.credentials.node_public[i],
                                      CONNECTION], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True, preexec_fn=die_with_parent)
                 for i in which}
        self._procs.extend(procs.values())
        for i, proc in procs.items():
            try:
                out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise DeploymentError(f"registering SuperNode {i}'s key took longer than {self.start_timeout:g} s") from None
            if proc.returncode != 0:
                raise DeploymentError(f"registering SuperNode {i}'s key failed: {' '.join(out.split())[-300:]}")

    def node_command(self, i: int, node_config: str | None = None, key: str | None = None) -> list:
        """The ``flower-supernode`` command line of client ``i`` (its own key unless ``key``)."""
        if self.insecure:
            security = ["--insecure"]
        else:
            security = ["--root-certificates", self.credentials.ca_cert,
                        "--auth-supernode-private-key", key or self.credentials.node_keys[i]]
        return [_tool("flower-supernode"), *security, "--superlink", f"127.0.0.1:{self.port}",
                "--host", "127.0.0.1", "--port", str(free_port()),
                "--node-config", node_config or " ".join(
                    [f"partition-id={i} num-partitions={self.n_nodes}", self.node_configs[i]]).strip()]

    def _spawn_node(self, i):
        starts = self._starts[i] = self._starts.get(i, -1) + 1
        self.node_logs[i] = f"supernode-{i}" + (f"-restart{starts}" if starts else "")
        return self._spawn(self.node_logs[i], self.node_command(i))

    def _registered(self, i) -> bool:
        # flower-supernode logs its node id once the SuperLink has registered it (polling
        # `flwr supernode ls` instead costs a Python start-up per call)
        try:
            with open(os.path.join(self.log_dir, self.node_logs[i] + ".log"), errors="replace") as fh:
                return "SuperNode ID:" in fh.read()
        except OSError:
            return False

    def _spawn(self, name, cmd):
        log = open(os.path.join(self.log_dir, f"{name}.log"), "w")
        try:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
                                    preexec_fn=die_with_parent)
        finally:
            log.close()
        self._procs.append(proc)
        return proc

    def _flwr(self, args, timeout):
        done = subprocess.run([_tool("flwr"), *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if done.returncode != 0:
            raise DeploymentError(f"flwr {' '.join(args[:2])} failed: {' '.join(done.stdout.split())[-300:]}")
        return done.stdout

    def _wait(self, ready, deadline, what, log_name):
        while not ready():
            dead = [p for p in [self.superlink, *self.nodes] if p is not None and p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"exited with code {dead[0].returncode}" if dead else f"within {self.start_timeout:g} s"
                raise DeploymentError(f"{what} ({why}); see {os.path.join(self.log_dir, log_name + '.log')}")
            time.sleep(0.25)

    @staticmethod
    def _listening(port) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    @staticmethod
    def _lines(proc, deadline):
        """Lines of proc.stdout; TimeoutError once ``deadline`` (monotonic) passes."""
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError
            if sel.select(timeout=None if left is None else min(left, 1.0)):
                line = proc.stdout.readline()
                if not line:
                    return
                yield line

    @staticmethod
    def _signal(pid, sig, group=False):
        """Signal a process (or its whole process group); one that is already gone is fine."""
        try:
            (os.killpg if group else os.kill)(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class SimulationDeployment(LocalDeployment):
    """Flower's simulation engine on 127.0.0.1: one ``flower-superlink --simulation`` whose runs get
    ``num_supernodes`` virtual SuperNodes (``partition-id=i num-partitions=N`` each), their
    ClientApps executed by Ray actors in one process tree instead of one OS process per message.
    The SuperLink is started --insecure (the simulation runtime has no SuperNodes to authenticate;
    it listens on 127.0.0.1 only, for the time of the run) and dies with the launcher like a
    LocalDeployment. ``client_cpus``: CPUs Ray reserves per ClientApp (how many run at once). The
    Ray head the runtime connects to is started first (fslora_cli.ray_head); ``start_timeout`` does
    not count it (``ray start``'s own waits bound it, RAY_HEAD_START_TIMEOUT is a hang guard)."""

    def __init__(self, num_supernodes: int, log_dir: str, *, client_cpus: int = 1, **kw):
        super().__init__(num_supernodes, log_dir, insecure=True, **kw)
        self.client_cpus = client_cpus
        self.ray_dir = None
        self.ray_address = None

    def start(self) -> None:
        t0 = time.monotonic()
        self._prepare_home()
        self._start_ray_head()
        deadline = time.monotonic() + self.start_timeout
        self.port = free_port()
        self.superlink = self._spawn("superlink", [_tool("flower-superlink"), "--insecure", "--simulation",
                                                   "--host", "127.0.0.1", "--port", str(self.port)])
        self._wait(lambda: self._listening(self.port), deadline, "the SuperLink did not listen", "superlink")
        with open(os.path.join(self.home, "config.toml"), "w") as fh:
            fh.write(f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
                     f'address = "127.0.0.1:{self.port}"\ninsecure = true\n'
                     f'options.num-supernodes = {self.n_nodes}\n'
                     f'options.backend.client-resources.num-cpus = {int(self.client_cpus)}\n'
                     f'options.backend.client-resources.num-gpus = 0\n')
        self.start_seconds = time.monotonic() - t0

    def _start_ray_head(self) -> None:
        """Start the Ray head Flower's runtime connects to (see fslora_cli.ray_head), trying
        RAY_HEAD_START_ATTEMPTS times; its address goes into the deployment's RAY_ADDRESS."""
        from .ray_head import HEAD_ENV, HeadStartError, start_head
        # private, removed with FLWR_HOME (also by the watchdog); short: Ray's socket paths must stay
        # under 108 characters
        home_ray = os.path.join(self.home, "ray")
        self.ray_dir = home_ray if len(home_ray) <= 48 else tempfile.mkdtemp(prefix="fslora-ray-", dir="/tmp")
        self.env.update(HEAD_ENV)
        log = os.path.join(self.log_dir, "ray-head.log")
        for attempt in range(1, RAY_HEAD_START_ATTEMPTS + 1):
            try:   # a directory per attempt: one head's session in each
                self.ray_address = start_head(_tool("ray"), os.path.join(self.ray_dir, str(attempt)), self.env, log,
                                              RAY_HEAD_START_TIMEOUT)
                break
            except HeadStartError as exc:
                # nothing but this head carries the marker yet: stop what the failed start left
                for sig in (signal.SIGTERM, signal.SIGKILL):
                    for pid in marked_processes(self.token):
                        self._signal(pid, sig)
                    time.sleep(1.0)
                if attempt == RAY_HEAD_START_ATTEMPTS:
                    raise DeploymentError(f"the simulation engine's Ray head did not start "
                                          f"({RAY_HEAD_START_ATTEMPTS} attempts): {exc}") from None
        self.env["RAY_ADDRESS"] = self.ray_address

    def _keep_logs(self) -> None:
        """The Ray head's own logs (raylet.out, gcs_server.out, the agents' logs: what explains a Ray
        failure) and its drivers' (Flower's runtime connected) into <log_dir>/ray-session/; its
        workers' logs stay behind."""
        for logs in sorted(glob.glob(os.path.join(self.ray_dir or "", "*", "session_2*", "logs"))):  # not session_latest
            keep = os.path.join(self.log_dir, "ray-session")
            os.makedirs(keep, exist_ok=True)
            for name in os.listdir(logs):
                if name.startswith(("raylet", "gcs_server", "dashboard_agent", "runtime_env_agent", "monitor",
                                    "python-core-driver")):
                    try:
                        shutil.copyfile(os.path.join(logs, name), os.path.join(keep, name))
                    except OSError:
                        pass

    def stop(self) -> float:
        try:
            return super().stop()
        finally:
            self._kill_head_leftovers()
            if self.ray_dir:
                shutil.rmtree(self.ray_dir, ignore_errors=True)

    def _kill_head_leftovers(self) -> None:
        """SIGKILL what still has files open in the head's directory (its agents, which outlive a
        killed raylet for a minute or more and ignore SIGTERM; their marker may not show)."""
        if not self.ray_dir:
            return
        for _ in range(50):
            left = processes_using(self.ray_dir)
            if not left:
                return
            for pid in left:
                self._signal(pid, signal.SIGKILL)
            time.sleep(0.1)
