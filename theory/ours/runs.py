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
    """The server iterates of S runs of T rounds at step ``lr``, all from one X^0.

    Parameters
    ----------
    lr : float
        The step size.
    seeds : list of int
        The run seeds.
    B : ndarray, shape (S, T+1, m, r)
        The B factors of the iterates.
    A : ndarray, shape (S, T+1, r, n)
        The A factors of the iterates.
    diverged : str, optional
        "" or what went wrong (then B and A hold the rounds every seed completed).
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
        """The first T rounds of every seed.

        Parameters
        ----------
        T : int
            The number of rounds kept.

        Returns
        -------
        Runs
            B: (S, T+1, m, r), A: (S, T+1, r, n).
        """
        return Runs(self.lr, self.seeds, self.B[:, :T + 1], self.A[:, :T + 1], self.diverged)


def law_index_sets(config, seed: int, round_index: int, n_clients: int) -> list:
    """The clients' index sets (single layer) of one round of one run, as the reference draws them.

    Keyed by (seed, round, client) and independent of the iterates, hence a draw from the sketch law
    whatever the implementation under test did (the general-H analysis needs nothing more).

    Parameters
    ----------
    config : fslora_ref.config.FedConfig
        The run's configuration (rank, budgets).
    seed : int
        The run seed.
    round_index : int
        The round t.
    n_clients : int
        The number of clients N.

    Returns
    -------
    list of ndarray
        Per client, its sorted index set, shape (k_i,).
    """
    cfg = config.replace(seed=int(seed))
    return [draw_round_sketches(cfg, round_index, i, 1)[0].indices for i in range(n_clients)]


def run_seeds(problem, config, rounds: int, seeds, runner=None, init_layers=None, progress=None) -> Runs:
    """Run ``rounds`` rounds per seed of the implementation under test, every seed from the same X^0.

    Parameters
    ----------
    problem : fslora_ref.problems.Problem
        A single-layer problem.
    config : fslora_ref.config.FedConfig
        The run's configuration (its seed is replaced by each seed).
    rounds : int
        The rounds T per seed.
    seeds : iterable of int
        The run seeds.
    runner : object, optional
        A round runner or anything :func:`theory.implementations.runner_for` accepts (None: the
        reference).
    init_layers : list of (ndarray, ndarray), optional
        X^0, ``[(B: (m, r), A: (r, n))]`` (default: the reference's LoRA initialisation for
        ``config.seed``).
    progress : object, optional
        Told ``update(1, text)`` after each seed.

    Returns
    -------
    Runs
        Cut to the rounds every seed completed if one diverged.

    Raises
    ------
    ValueError
        If the problem has more than one layer.
    """
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
