"""The ledger of what each round over Flower cost (the rounds themselves: start_run.py).

The ledger, ``<out>/flower.json``, is rewritten atomically after every round: per client the
bytes actually sent each way (Flower's serialised objects) next to the accounted floats, the
ClientApp's start-up and training time, and the clients that did not answer and why.
"""
from __future__ import annotations

import json
import os

from fslora_ref.outputs import write_json


class Ledger:
    """``<out>/flower.json``: one entry per ServerApp run (a resumed job appends one), keyed by
    Flower's run id; a failed run's entry has the error and the exit code `fslora <job>` gives for it.

    Creating a Ledger appends this run's entry (status ``"running"``) to the document in memory;
    :meth:`set` and :meth:`save` write the file (atomically, strict JSON).

    Parameters
    ----------
    out : str
        The run's output directory (it holds ``flower.json``).
    resume : bool, default False
        Keep the entries an earlier run left in ``flower.json`` (else the file starts afresh).
    run_id : int or str, optional
        Flower's run id, stored as text (None: unknown).

    Raises
    ------
    ValueError
        With ``resume``, if the existing ``flower.json`` is not valid JSON.
    """

    def __init__(self, out: str, resume: bool = False, run_id=None):
        self.path = os.path.join(out, "flower.json")
        self.doc = {"runs": []}
        if resume and os.path.exists(self.path):
            with open(self.path) as fh:
                try:
                    self.doc = json.load(fh)
                except ValueError as exc:
                    raise ValueError(f"{self.path} is not valid JSON ({exc}); move it away to resume") from None
        self.run = {"run-id": None if run_id is None else str(run_id), "status": "running", "nodes": {}, "rounds": []}
        self.doc["runs"].append(self.run)

    def set(self, **fields):
        """Update this run's entry and write the ledger.

        Parameters
        ----------
        **fields
            Entry keys and JSON values (e.g. ``status="completed"``, ``nodes={...}``).
        """
        self.run.update(fields)
        self.save()

    def save(self):
        """Write the ledger to ``<out>/flower.json`` (atomically, strict JSON)."""
        write_json(self.path, self.doc)

    @staticmethod
    def count(out: str) -> int:
        """How many run entries ``<out>/flower.json`` has.

        Parameters
        ----------
        out : str
            The run's output directory.

        Returns
        -------
        int
            The number of entries; 0 if there is no file or it cannot be read.
        """
        try:
            with open(os.path.join(out, "flower.json")) as fh:
                return len(json.load(fh).get("runs", []))
        except (OSError, ValueError, AttributeError, TypeError):
            return 0

    @staticmethod
    def mark_crashed(out: str, message: str, first: int = 0) -> bool:
        """Record a SuperLink's death as the error of the runs it took down.

        Every entry from index ``first`` on (the ones this deployment added) that did not complete
        gets status ``"failed"``, ``message`` as its error and exit code 1; the error its ServerApp
        recorded, if any, is a consequence and is kept as ``"serverapp-error"``.

        Parameters
        ----------
        out : str
            The run's output directory.
        message : str
            How the SuperLink died (one line).
        first : int, default 0
            The index of the first entry this deployment added (:meth:`count` before it started).

        Returns
        -------
        bool
            True if an entry was marked (and the file rewritten); False if none was, or the file
            cannot be read.
        """
        path = os.path.join(out, "flower.json")
        try:
            with open(path) as fh:
                doc = json.load(fh)
            runs = doc.get("runs", [])[first:]
        except (OSError, ValueError, AttributeError):
            return False
        changed = False
        for run in runs:
            if isinstance(run, dict) and run.get("status") != "completed":
                if run.get("error"):
                    run["serverapp-error"] = run["error"]
                run.update(status="failed", error=message, **{"exit-code": 1})
                changed = True
        if changed:
            write_json(path, doc)
        return changed

    @staticmethod
    def exit_code(out: str, run_id) -> int:
        """The exit code recorded for a failed Flower run, for `fslora <job>` to exit with.

        Parameters
        ----------
        out : str
            The run's output directory.
        run_id : int or str
            Flower's run id (its last entry counts).

        Returns
        -------
        int
            The recorded ``exit-code`` if it is an int above 1; else 1 (the ServerApp failed before
            writing its entry, or the file is not ours).
        """
        try:
            with open(os.path.join(out, "flower.json")) as fh:
                runs = json.load(fh).get("runs", [])
        except (OSError, ValueError, AttributeError):
            return 1
        mine = [r for r in runs if isinstance(r, dict) and r.get("run-id") == str(run_id)]
        code = mine[-1].get("exit-code") if mine else None
        return code if isinstance(code, int) and code > 1 else 1
