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
        With ``resume``, if the existing ``flower.json`` is damaged (one line, see :meth:`read`).
    """

    def __init__(self, out: str, resume: bool = False, run_id=None):
        self.path = os.path.join(out, "flower.json")
        self.doc = {"runs": []}
        if resume:
            try:
                self.doc = Ledger.read(out)
            except ValueError as exc:
                raise ValueError(f"{exc}; move it away to resume") from None
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
    def read(out: str) -> dict:
        """The ledger document in ``<out>/flower.json``, the one reader of the file.

        Parameters
        ----------
        out : str
            The run's output directory.

        Returns
        -------
        dict
            ``{"runs": [entry, ...]}``; ``{"runs": []}`` when there is no file.

        Raises
        ------
        ValueError
            If the file is damaged: it cannot be read, is not JSON, or is not a ledger (an object
            whose ``"runs"`` is a list of objects). One line, naming the file. The static methods
            below, which run after a failure, fall back instead of raising.
        """
        path = os.path.join(out, "flower.json")
        if not os.path.exists(path):
            return {"runs": []}
        try:
            with open(path) as fh:
                doc = json.load(fh)
        except OSError as exc:
            raise ValueError(f"{path} cannot be read ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from None
        runs = doc.get("runs") if isinstance(doc, dict) else None
        if not isinstance(runs, list) or not all(isinstance(run, dict) for run in runs):
            raise ValueError(f"{path} is not a ledger (an object whose \"runs\" is a list of run entries)")
        return doc

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
            The number of entries; 0 if there is no file or it is damaged (:meth:`read`).
        """
        try:
            return len(Ledger.read(out)["runs"])
        except ValueError:
            return 0

    @staticmethod
    def mark_interrupted(out: str) -> int:
        """Record as interrupted the entries an earlier launcher left ``"running"``.

        Only the holder of ``out``'s output lock calls this (a resuming `fslora flower`), so an entry
        still ``"running"`` belongs to a launcher that is gone: killed (``kill -9`` gives it no chance
        to write) or on a machine that stopped. Each gets status ``"interrupted"`` and an error that
        says so; its rounds stay as recorded.

        Parameters
        ----------
        out : str
            The run's output directory.

        Returns
        -------
        int
            How many entries were marked (0: none, no file, or a damaged one, which the resuming
            ServerApp then refuses in one line).
        """
        try:
            doc = Ledger.read(out)
        except ValueError:
            return 0
        stale = [run for run in doc["runs"] if run.get("status") == "running"]
        for run in stale:
            run.update(status="interrupted", error="the launcher stopped before this run recorded an outcome "
                       "(killed, or the machine stopped); found by a later `fslora flower ... --resume`")
        if stale:
            write_json(os.path.join(out, "flower.json"), doc)
        return len(stale)

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
            True if an entry was marked (and the file rewritten); False if none was, or there is no
            file, or it is damaged (:meth:`read`; it is left as it is).
        """
        try:
            doc = Ledger.read(out)
        except ValueError:
            return False
        changed = False
        for run in doc["runs"][first:]:
            if run.get("status") != "completed":
                if run.get("error"):
                    run["serverapp-error"] = run["error"]
                run.update(status="failed", error=message, **{"exit-code": 1})
                changed = True
        if changed:
            write_json(os.path.join(out, "flower.json"), doc)
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
            writing its entry, or there is no file, or it is damaged, :meth:`read`).
        """
        try:
            runs = Ledger.read(out)["runs"]
        except ValueError:
            return 1
        mine = [r for r in runs if r.get("run-id") == str(run_id)]
        code = mine[-1].get("exit-code") if mine else None
        return code if isinstance(code, int) and code > 1 else 1
