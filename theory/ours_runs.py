"""Trajectories for the toolkit's own H = 1 bound, through an injectable round of the implementation under test.

A *round function* is the one thing that differs between the reference and an implementation under
test:

    round_fn(problem, config, layers, round_index) -> new layers [(B, A)] (a list),
                                                   or (that list, index_sets [client][layer] or None),
                                                   or an object with .layers (a RoundResult)

It must run one round of FSLoRA from the global factors ``layers`` with the run seed ``config.seed``
(its own sketch draws keyed on (seed, round_index, client)). ``reference_round()`` is the reference's
real Algorithm 1 (``fslora_ref.algorithms`` through ``fslora_ref.federation.run_round``);
``reference_round(SomeMutant())`` runs any ``Algorithm`` subclass the same way. Rounds are
stateless: the server holds only X = [(B, A)] between rounds (Algorithm 1 without a server
optimiser), which is also what the conformance protocol's ``black_box_round(task)`` does.

Every seed starts from the same X^0 (the reference's LoRA initialisation with ``init_seed``), so the
average over seeds estimates the expectation over the sketches.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fslora_ref.algorithms import get_algorithm
from fslora_ref.algorithms.protocol import ServerState
from fslora_ref.client import DivergenceError
from fslora_ref.federation import run_round


def reference_round(algorithm=None):
    """A round function running ``algorithm`` (default: the reference FSLoRA) through ``run_round``."""
    algorithm = algorithm or get_algorithm("fslora")

    def round_fn(problem, config, layers, round_index):
        state = ServerState([(B.copy(), A.copy()) for B, A in layers])
        new, plans, _ = run_round(algorithm, state, problem, config, round_index)
        sets = [None] * config.n_clients
        for plan in plans:
            sets[plan.client] = plan.indices
        return new.layers, sets

    round_fn.algorithm = algorithm
    return round_fn


def _split(result):
    """(layers, index_sets or None) from what a round function returned: [(B, A)], (layers, index_sets),
    or an object with ``.layers`` (the conformance protocol's RoundResult)."""
    if hasattr(result, "layers"):
        return list(result.layers), None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], list):
        return list(result[0]), result[1]
    return list(result), None


@dataclass
class Runs:
    """Server iterates of ``len(seeds)`` runs of T rounds at step ``lr`` from one X^0.

    B: (S, T+1, m, r), A: (S, T+1, r, n); index_sets[s][t] = [client][layer] arrays (or None when
    the round function does not report them); diverged: "" or what went wrong (then B, A hold
    the rounds completed by every seed).
    """

    lr: float
    seeds: list
    B: np.ndarray
    A: np.ndarray
    index_sets: list = field(default_factory=list)
    diverged: str = ""

    @property
    def rounds(self) -> int:
        return self.B.shape[1] - 1

    def prefix(self, T: int) -> "Runs":
        """The first T rounds of every seed."""
        return Runs(self.lr, self.seeds, self.B[:, :T + 1], self.A[:, :T + 1],
                    [s[:T] for s in self.index_sets], self.diverged)


def run_seeds(problem, config, rounds: int, seeds, round_fn=None, init_layers=None, progress=None) -> Runs:
    """Run ``rounds`` rounds per seed (config.seed = each seed) of ``round_fn`` from ``init_layers``
    (default: the reference's LoRA initialisation for ``config.seed``). Single-layer problems only."""
    round_fn = round_fn or reference_round()
    if problem.n_layers != 1:
        raise ValueError(f"the H = 1 bound's runs need a single-layer problem, got {problem.n_layers} layers")
    if init_layers is None:
        init_layers = get_algorithm("fslora").init(problem, config).layers
    (B0, A0), = init_layers
    seeds = list(seeds)
    Bs = np.empty((len(seeds), rounds + 1) + B0.shape)
    As = np.empty((len(seeds), rounds + 1) + A0.shape)
    all_sets, diverged, done = [], "", rounds
    for j, seed in enumerate(seeds):
        cfg = config.replace(seed=int(seed))
        layers = [(B0.copy(), A0.copy())]
        Bs[j, 0], As[j, 0] = B0, A0
        sets = []
        for t in range(rounds):
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    layers, idx = _split(round_fn(problem, cfg, layers, t))
            except DivergenceError as exc:
                diverged, done = f"seed {seed}: {exc}", min(done, t)
                break
            (B, A), = layers
            if not (np.all(np.isfinite(B)) and np.all(np.isfinite(A))):
                diverged, done = f"seed {seed}: non-finite iterates at round {t}", min(done, t)
                break
            Bs[j, t + 1], As[j, t + 1] = B, A
            sets.append(idx)
        all_sets.append(sets)
        if progress is not None:
            progress.update(1, f"seed {seed}")
    out = Runs(config.lr, seeds, Bs, As, all_sets, diverged)
    return out.prefix(done) if done < rounds else out
