"""Trajectories for the toolkit's own H = 1 bound, through the round runner of the implementation under test.

    runs = run_seeds(problem, config, rounds, seeds)                        # the reference
    runs = run_seeds(problem, config, rounds, seeds, load_runner("examples/numpy_fslora.py:impl"))

The runner is the one every algorithm-level claim of `fslora verify` uses (:mod:`theory.implementations`:
the reference's ``run_round`` by default, any ``Algorithm`` subclass, or a conformance-protocol
object). Rounds are stateless: the server holds only X = [(B, A)] between rounds (Algorithm 1
without a server optimiser). Every seed starts from the same X^0 (the reference's LoRA
initialisation for ``config.seed``), so the average over seeds estimates the expectation over the
sketches. Unlike :func:`theory.implementations.trajectory`, a divergence keeps the rounds every seed
completed: the cells beyond it are reported as diverged, the ones before it are still tested.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fslora_ref.algorithms import get_algorithm
from fslora_ref.algorithms.fslora import draw_round_sketches
from fslora_ref.client import DivergenceError

from ..implementations import iterates, runner_for


@dataclass
class Runs:
    """Server iterates of ``len(seeds)`` runs of T rounds at step ``lr`` from one X^0.

    B: (S, T+1, m, r), A: (S, T+1, r, n); diverged: "" or what went wrong (then B, A hold the rounds
    completed by every seed).
    """

    lr: float
    seeds: list
    B: np.ndarray
    A: np.ndarray
    diverged: str = ""

    @property
    def rounds(self) -> int:
        return self.B.shape[1] - 1

    def prefix(self, T: int) -> "Runs":
        """The first T rounds of every seed."""
        return Runs(self.lr, self.seeds, self.B[:, :T + 1], self.A[:, :T + 1], self.diverged)


def law_index_sets(config, seed: int, round_index: int, n_clients: int) -> list:
    """[client] index sets (single layer) of round ``round_index`` of run ``seed`` as the reference draws
    them: keyed by (seed, round, client) and independent of the iterates, hence a draw from the sketch
    law whatever the implementation under test did (the general-H analysis needs nothing more)."""
    cfg = config.replace(seed=int(seed))
    return [draw_round_sketches(cfg, round_index, i, 1)[0].indices for i in range(n_clients)]


def run_seeds(problem, config, rounds: int, seeds, runner=None, init_layers=None, progress=None) -> Runs:
    """``rounds`` rounds per seed (config.seed = each seed) of ``runner`` (a round runner or anything
    :func:`theory.implementations.runner_for` accepts; None = the reference) from ``init_layers``
    (default: the reference's LoRA initialisation for ``config.seed``). Single-layer problems only."""
    runner = runner_for(runner)
    if problem.n_layers != 1:
        raise ValueError(f"the H = 1 bound's runs need a single-layer problem, got {problem.n_layers} layers")
    if init_layers is None:
        init_layers = get_algorithm("fslora").init(problem, config).layers
    (B0, A0), = init_layers
    seeds = list(seeds)
    Bs = np.empty((len(seeds), rounds + 1) + B0.shape)
    As = np.empty((len(seeds), rounds + 1) + A0.shape)
    diverged, done = "", rounds
    for j, seed in enumerate(seeds):
        Bs[j, 0], As[j, 0] = B0, A0
        completed = 0
        try:
            for t, ((B, A),) in iterates(runner, problem, config.replace(seed=int(seed)), init_layers, rounds):
                Bs[j, t + 1], As[j, t + 1] = B, A
                completed = t + 1
        except DivergenceError as exc:
            diverged, done = f"seed {seed}: {exc}", min(done, completed)
        if progress is not None:
            progress.update(1, f"seed {seed}")
    out = Runs(config.lr, seeds, Bs, As, diverged)
    return out.prefix(done) if done < rounds else out
