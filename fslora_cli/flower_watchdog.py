"""The deployment's watchdog: ``python -m fslora_cli.flower_watchdog LAUNCHER_PID TOKEN HOME``.

The launcher's direct children get SIGKILL from the kernel when it dies (PR_SET_PDEATHSIG), but
the processes Flower starts in turn (SuperExec, ServerApp, ClientApps, some in sessions of their
own) do not. This process, started by the launcher in a session of its own, checks twice a second
that the launcher is alive; once it is gone (even by ``kill -9``) it kills every process that carries
the deployment's marker, removes the deployment's private directory (credentials) and exits. A
normal stop ends the watchdog itself.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a reused pid apart); None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else fields[19]
    except (OSError, IndexError):
        return None


def watch(launcher: int, token: str, home: str, poll: float = 0.5) -> None:
    """Wait for ``launcher`` to die, then kill the marked processes of deployment ``token``."""
    from .flower_deploy import marked_processes, processes_using
    born = start_time(launcher)
    while born is not None and start_time(launcher) == born:
        time.sleep(poll)
    for _ in range(100):
        # and what has files open in home: the simulation engine's Ray agents (their marker may not show)
        left = [p for p in {*marked_processes(token), *processes_using(home)} if p != os.getpid()]
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.1)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    watch(int(sys.argv[1]), sys.argv[2], sys.argv[3])
