"""One federated round over Flower, shaped like ``fslora_ref.federation.run_round``, so the
reference's run loop (history, accounting, checkpoints, --resume) and the bridge's finetune
loop drive a Flower deployment unchanged; and the ledger of what each round cost.

The ledger, ``<out>/flower.json``, is rewritten atomically after every round: per client the
bytes actually sent each way (Flower's serialised objects) next to the accounted floats, the
ClientApp's start-up and training time, and the clients that did not answer and why.
"""
from __future__ import annotations

import json
import os

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord

from fslora_ref.outputs import write_json

from .exchange import exchange
from .strategy import FSLoRAStrategy


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


class FlowerRounds:
    """A ``round_fn`` that runs each round over Flower, for the reference's and the bridge's run loops.

    Calling it as ``rounds(algorithm, state, problem, config, round_index)`` sends the round's
    plans to the SuperNodes in ``nodes`` and aggregates the replies with :class:`FSLoRAStrategy`;
    it returns ``(state, plans, uploads)`` as ``fslora_ref.federation.run_round`` does, and records
    the round (bytes and floats each way, timings, missing clients) in the ledger. The strategy's
    MissingClients / RefusedUpdate (policy "stop") or the client's DivergenceError is raised after
    the round is recorded. One FSLoRAStrategy per algorithm, made at its first round and kept.
    The run loop that calls it evaluates the global model itself (the bridge's finetune); `fslora
    flower simulate` lets Flower's ``Strategy.start`` drive its rounds instead (simulate_run.py).

    Parameters
    ----------
    grid : flwr.server.Grid
        The ServerApp's grid.
    nodes : dict
        ``{client id: Flower node id}`` (from discovery).
    timeout : float
        Seconds to wait for a round's replies.
    on_missing : {"stop", "continue"}, default "stop"
        What a participant without a usable reply does to the round (see FSLoRAStrategy).
    poll : float, default 0.5
        Seconds between pulls for replies.
    dtype : numpy dtype, default float64
        The float type of the factors sent to clients.
    ledger : Ledger, optional
        Where each round is recorded (None: not recorded).
    on_bad_update : {"stop", "drop"}, default "stop"
        What a refused update does to the round (see FSLoRAStrategy).
    max_update_norm : float, optional
        A bound on the Euclidean norm of a client's upload (None: no bound).
    """

    def __init__(self, grid, nodes, *, timeout, on_missing="stop", poll=0.5, dtype=np.float64, ledger=None,
                 on_bad_update="stop", max_update_norm=None):
        self.grid, self.nodes, self.timeout, self.on_missing = grid, dict(nodes), timeout, on_missing
        self.on_bad_update, self.max_update_norm = on_bad_update, max_update_norm
        self.poll, self.dtype, self.ledger = poll, dtype, ledger
        self.strategies = {}                 # algorithm name -> its FSLoRAStrategy

    def strategy(self, algorithm, problem, config, state) -> FSLoRAStrategy:
        """The algorithm's strategy, made once; its state is set to the run loop's ``state``.

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm.
        problem : Problem
            What its rules read.
        config : FedConfig
            The run's configuration.
        state : ServerState
            The server state before the round.

        Returns
        -------
        FSLoRAStrategy
        """
        strategy = self.strategies.get(algorithm.name)
        if strategy is None or strategy.algorithm is not algorithm or strategy.config is not config:
            strategy = self.strategies[algorithm.name] = FSLoRAStrategy(
                algorithm, problem, config, self.nodes, state=state, on_missing=self.on_missing, dtype=self.dtype,
                reply_timeout=self.timeout, on_bad_update=self.on_bad_update, max_update_norm=self.max_update_norm,
                ledger=self.ledger)
        strategy.state = state
        return strategy

    def __call__(self, algorithm, state, problem, config, round_index):
        strategy = self.strategy(algorithm, problem, config, state)
        messages = strategy.configure_train(round_index + 1, ArrayRecord(), ConfigRecord(), self.grid)
        replies, strategy.refused = exchange(self.grid, messages, self.timeout, self.poll)
        strategy.aggregate_train(round_index + 1, replies)
        plans, uploads, _ = strategy.last
        return strategy.state, plans, uploads
