"""What a bridge run records, for the one driver loop (``fslora_ref.federation.run``).

``fslora finetune`` runs through the reference's loop (rounds, resume, per-round checkpoints,
the wrapping of divergence and resume errors); :class:`FinetuneRecorder` is its recorder (the
protocol is in ``fslora_ref/recorder.py``). Its history is a dict: the run's description,
``rounds`` (one row per round: losses and per-client communication and memory) and ``eval``
(held-out evaluations of the global model at round 0, every ``eval_every`` rounds and after the
last). After every round's checkpoint, :meth:`FinetuneRecorder.after_round` rewrites
history.json and curves.png.

A diverging bridge run is stopped where the reference stops one: a non-finite local loss
(``llm_bridge.client.train_client``) or non-finite server factors (``run_round``); the held-out
evaluation is an accuracy, so there is no global loss to compare with f(X^0).
"""
from __future__ import annotations

import os
import time

import numpy as np

from fslora_ref.outputs import write_json
from fslora_ref.progress import Progress

from .federated import global_factors
from .task import evaluate


class FinetuneRecorder:
    """The bridge's records of one run (see the module docstring).

    Parameters
    ----------
    layers : LoraLayers
        The model's LoRA layers (the global model is installed there to evaluate it).
    tok : tokenizer
        The model's tokenizer.
    held : list of Example
        The held-out examples.
    shapes : ModelShapes
        Layer shapes and client sizes.
    fresh_history : dict
        The history of a run that starts now (its ``rounds`` and ``eval`` empty).
    eval_every : int
        Evaluate every this many rounds (and after the last).
    elem_bytes : int
        Bytes per float of the model's dtype.
    out : str
        The output directory (history.json and curves.png after every round).

    Attributes
    ----------
    round_seconds : float or None
        The wall time of the round being recorded (the row's ``seconds``), set by :meth:`timed` or
        by whoever runs the round (the Flower app: the round's train exchange).
    """

    def __init__(self, layers, tok, held, shapes, fresh_history: dict, *, eval_every: int, elem_bytes: int, out: str):
        self.layers, self.tok, self.held, self.shapes = layers, tok, held, shapes
        self.fresh_history, self.eval_every, self.elem_bytes, self.out = fresh_history, eval_every, elem_bytes, out
        self.history, self.final_state, self.bar, self.round_seconds = None, None, None, None

    def evaluate(self, algorithm, state, config) -> dict:
        """The global model's held-out evaluation (``llm_bridge.task.evaluate``).

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The server state.
        config : FedConfig
            The run's configuration.

        Returns
        -------
        dict
        """
        self.layers.install(global_factors(algorithm, state, config, self.shapes.layer_shapes), trainable=False)
        return evaluate(self.layers.model, self.tok, self.held)

    # -- the recorder protocol (fslora_ref/recorder.py) ------------------------------------------
    def identity(self, algorithm, given: dict) -> dict:
        """What a checkpoint must match besides the config: ``given`` only.

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm.
        given : dict
            The bridge's identity (:func:`llm_bridge.finetune.run_identity`).

        Returns
        -------
        dict
            A copy of ``given``.
        """
        # finetune passes the bridge's identity (layers, shapes, data digest); the algorithm is always
        # its default variant (get_algorithm(job.algorithm)), which the recipe's "algorithm" names
        return dict(given)

    def start(self, algorithm, state, config) -> dict:
        """The fresh history, with the evaluation of the initial model (round 0).

        Parameters
        ----------
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The initial server state.
        config : FedConfig
            The run's configuration.

        Returns
        -------
        dict
        """
        history = self.fresh_history
        history["eval"].append(dict(round=0, **self.evaluate(algorithm, state, config)))
        return self._follow(history, config, 0)

    def resumed(self, path, algorithm, state, history, config, next_round) -> dict:
        """A history loaded from a checkpoint, checked to hold ``next_round`` rounds.

        Parameters
        ----------
        path : str
            The checkpoint (named in an error).
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The loaded server state.
        history : dict
            The loaded history.
        config : FedConfig
            The run's configuration.
        next_round : int
            The first round still to run.

        Returns
        -------
        dict
            ``history``, its config set to this run's.
        """
        if len(history.get("rounds", [])) != next_round or not history.get("eval"):
            raise ValueError(f"checkpoint {path} is malformed: its history does not hold {next_round} rounds")
        history["config"] = config.to_json()
        return self._follow(history, config, next_round)

    def record(self, history, algorithm, state, config, round_index, plans, uploads) -> dict:
        """Append one round's row; evaluate every ``eval_every`` rounds and after the last.

        Parameters
        ----------
        history : dict
            The run's history.
        algorithm : Algorithm
            The algorithm.
        state : ServerState
            The server state after the round.
        config : FedConfig
            The run's configuration.
        round_index : int
            The round.
        plans : list of ClientPlan
            The round's plans.
        uploads : list of Upload
            The round's uploads.

        Returns
        -------
        dict
            The row (:func:`round_row`).
        """
        t = round_index
        row = round_row(t, plans, uploads, self.elem_bytes, self.round_seconds)
        history["rounds"].append(row)
        if (t + 1) % self.eval_every == 0 or t + 1 == config.rounds:
            history["eval"].append(dict(round=t + 1, **self.evaluate(algorithm, state, config)))
        return row

    def finish(self, history, state) -> dict:
        """After the last round: close the bar, keep the final state (``final_state``).

        Parameters
        ----------
        history : dict
            The run's history.
        state : ServerState
            The final server state.

        Returns
        -------
        dict
            ``history``.
        """
        self.bar.close()
        self.final_state = state
        return history

    # -- around each round ---------------------------------------------------------------------
    def timed(self, round_fn):
        """``round_fn`` with a progress bar of the round's clients, timed (the row's ``seconds``).

        Parameters
        ----------
        round_fn : callable
            With :func:`fslora_ref.federation.run_round`'s signature.

        Returns
        -------
        callable
            The same signature and result.
        """
        def one_round(algorithm, state, problem, config, round_index):
            bar = Progress(len(config.participants(round_index)), f"  round {round_index + 1} clients")
            algorithm.on_client = lambda up: bar.update(1, f"client {up.client}")
            t0 = time.perf_counter()
            result = round_fn(algorithm, state, problem, config, round_index)
            bar.close()
            self.round_seconds = time.perf_counter() - t0
            return result
        return one_round

    def after_round(self, round_index: int, row: dict) -> None:
        """After the round's checkpoint: rewrite history.json and curves.png, advance the bar.

        Parameters
        ----------
        round_index : int
            The round.
        row : dict
            Its row.
        """
        write_outputs(self.out, self.history)
        last = self.history["eval"][-1]
        self.bar.update(1, f"loss {row['train_loss']:.3f} acc@{last['round']} {last['mean']:.2f}")

    def _follow(self, history, config, done: int) -> dict:
        self.history = history
        self.bar = Progress(config.rounds, "rounds", done=done)
        return history


def round_row(t, plans, uploads, elem_bytes, seconds) -> dict:
    """Per-round record: losses, and per-client upload / download / trainable-state memory.

    Parameters
    ----------
    t : int
        The round index (recorded as ``t + 1``).
    plans : list of ClientPlan
        The round's plans.
    uploads : list of Upload
        The round's uploads.
    elem_bytes : int
        Bytes per float.
    seconds : float or None
        The round's wall time.

    Returns
    -------
    dict
    """
    return {"round": t + 1, "seconds": seconds,
            "train_loss": float(np.mean([np.mean(u.losses) for u in uploads])),
            "clients": [{"client": u.client, "k": int(p.factors[0].B.shape[1]), "loss_first": u.losses[0],
                         "loss_last": u.losses[-1], "upload_floats": u.upload_floats,
                         "download_floats": p.download_floats, "broadcast_floats": p.broadcast_floats,
                         "memory_floats": u.memory_floats, "memory_bytes": u.memory_floats * elem_bytes}
                        for p, u in zip(plans, uploads)]}


def write_outputs(out, history):
    """history.json (strict JSON: a non-finite number is an error, never ``NaN``) and curves.png.

    Parameters
    ----------
    out : str
        The output directory.
    history : dict
        The run's history.
    """
    write_json(os.path.join(out, "history.json"), _jsonable(history))
    from .plots import plot_history
    plot_history(history, os.path.join(out, "curves.png"))


def _jsonable(x):
    """``x`` with NumPy scalars and arrays turned into Python numbers and lists."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return x
