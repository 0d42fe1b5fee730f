"""A simulation-engine run whose engine did not start is run again, and the failed attempt is kept.

On a loaded machine Ray's node can fail to start in time: its raylet waits a fixed 15 s for the port
files of its two Python agents (dashboard agent, runtime-env agent) and aborts if their imports take
longer ("Timed out waiting for file .../metrics_agent_port_..." in raylet.out), and ``ray.init`` gives
the raylet a fixed 30 s to register (``ray/_private/node.py``). In Ray 2.55 neither wait is reached by
any ``ray.init`` argument, Flower setting or environment variable (``RAY_agent_register_timeout_ms``
does not change the 15 s; ``num_cpus`` only changes workers started after registration). The
launcher therefore starts the head itself and writes the agents' port files for the raylet
(:mod:`fslora_cli.ray_head`); this retry is the fallback for a start that fails anyway. Then Flower's
simulation runtime fails before any ClientApp ran, so nothing was trained: ``fslora flower <job>
--engine simulation`` runs the job again in a fresh deployment (the leftover Ray processes of the
failed one are stopped first), at most :data:`ENGINE_START_ATTEMPTS` times, saying so on stderr. This
rides out a transient overload, not a sustained one. The retry has the same options as the failed
attempt (a fresh job starts afresh; a ``--resume`` resumes from the same checkpoints, which the failed
attempt did not touch).

The failed attempt stays in ``<out>/flower.json``: its entry is marked ``"failed"`` with the cause
(an entry is added if its ServerApp had not written one: it usually has not), and put back in front of
the retry's entry if the retry's ServerApp, starting a fresh ledger, dropped it.
"""
from __future__ import annotations

import json
import os

from fslora_ref.outputs import write_json

ENGINE_START_ATTEMPTS = 3
# the last line of the exception ray.init raises when its node missed the start-up window
RAY_NODE_START_TIMEOUT = "The current node timed out during startup"


def engine_start_failure(output: str) -> str | None:
    """Why the simulation engine did not start, if the run's output shows Ray's start-up timeout.

    Parameters
    ----------
    output : str
        What ``flwr run --stream`` showed (:attr:`fslora_cli.flower_deploy.RunResult.output`).

    Returns
    -------
    str or None
        A one-line cause naming Ray's node start-up timeout; None if the output does not show it
        (any other failure is the run's own and is not retried).
    """
    if RAY_NODE_START_TIMEOUT not in output:
        return None
    return ("the simulation engine did not start: Ray's node did not register in time (Ray waits a fixed 15 s "
            "for its raylet's agents and 30 s for the raylet; the machine is overloaded)")


def _read(path: str) -> dict | None:
    """The ledger at ``path`` (``{"runs": []}`` if there is none); None if it is not a ledger."""
    if not os.path.exists(path):
        return {"runs": []}
    try:
        with open(path) as fh:
            doc = json.load(fh)
    except (OSError, ValueError):
        return None
    runs = doc.get("runs") if isinstance(doc, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        return None
    return doc


def attempt_entries(out: str, run_id) -> list | None:
    """The entries of ``<out>/flower.json`` of Flower run ``run_id`` (what one attempt's ServerApp wrote).

    Parameters
    ----------
    out : str
        The run's output directory.
    run_id : int or str
        Flower's id of the attempt's run.

    Returns
    -------
    list or None
        The entries (``[]`` if the ServerApp wrote none); None if the file cannot be read or is not
        a ledger (then nobody can tell whether the attempt trained anything).
    """
    doc = _read(os.path.join(out, "flower.json"))
    return None if doc is None else [e for e in doc["runs"] if e.get("run-id") == str(run_id)]


def trained_nothing(entries: list | None) -> bool:
    """Whether the attempt that added ``entries`` ran no round (so running it again repeats nothing).

    Parameters
    ----------
    entries : list or None
        :func:`attempt_entries` of the attempt.

    Returns
    -------
    bool
        True if the entries are readable, none completed and none recorded a round.
    """
    return entries is not None and all(e.get("status") != "completed" and not e.get("rounds") for e in entries)


def record_failed_attempt(out: str, run_id, cause: str) -> list:
    """Mark the entries of Flower run ``run_id`` in ``<out>/flower.json`` failed with ``cause`` (exit code 1).

    The error the attempt's ServerApp recorded, if any, is a consequence and is kept as
    ``"serverapp-error"``. If the ServerApp had written no entry, one is added.

    Parameters
    ----------
    out : str
        The run's output directory.
    run_id : int or str
        Flower's id of the attempt's run.
    cause : str
        Why the attempt failed (one line).

    Returns
    -------
    list
        The attempt's entries as now written; ``[]`` (and nothing written) if the file there is not
        a ledger.
    """
    path = os.path.join(out, "flower.json")
    doc = _read(path)
    if doc is None:
        return []   # not a ledger: nothing of it is overwritten
    mine = [e for e in doc["runs"] if e.get("run-id") == str(run_id)]
    if not mine:
        mine = [{"run-id": str(run_id), "status": "running", "nodes": {}, "rounds": []}]
        doc["runs"].append(mine[0])
    for entry in mine:
        if entry.get("error"):
            entry["serverapp-error"] = entry["error"]
        entry.update(status="failed", error=cause, **{"exit-code": 1})
    write_json(path, doc)
    return mine


def keep_failed_attempts(out: str, failed: list, run_id) -> None:
    """Put the failed attempts' entries back in ``<out>/flower.json`` in front of run ``run_id``'s.

    A retry of a fresh job starts a fresh ledger, which drops them; a retry with ``--resume``
    keeps them (nothing is then changed).

    Parameters
    ----------
    out : str
        The run's output directory.
    failed : list
        The entries :func:`record_failed_attempt` returned, oldest first.
    run_id : int or str
        Flower's id of the retry's run.
    """
    if not failed:
        return
    path = os.path.join(out, "flower.json")
    doc = _read(path)
    if doc is None:
        return
    runs = doc["runs"]
    present = {e.get("run-id") for e in runs}
    missing = [e for e in failed if e.get("run-id") not in present]
    if not missing:
        return
    at = next((i for i, e in enumerate(runs) if e.get("run-id") == str(run_id)), len(runs))
    runs[at:at] = missing
    write_json(path, doc)
