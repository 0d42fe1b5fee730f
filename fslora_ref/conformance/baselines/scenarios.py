"""The tasks the baseline battery hands an implementation (fixed seeds: every run is the same)."""
from __future__ import annotations

import numpy as np

from ...algorithms import get_algorithm
from ...algorithms.flexlora import truncated_factors
from ..protocol import QuadraticOracle
from .protocol import AggregationTask, RoundsTask, coefficient
from .reference import TaskProblem, task_config, task_fresh_pairs

SHAPES = [(7, 5), (4, 6)]          # two layers, m != n
RANK = 6
BUDGETS = (2, 3, 5, 6)             # heterogeneous, one client at full rank
SIZES = (30, 10, 20, 40)           # unequal data sizes: uniform and data-size weights differ
SCALING = 0.5


def _rng(tag: int) -> np.random.Generator:
    return np.random.default_rng([20, tag])


def _factors(rng, shapes, rank):
    return [(rng.standard_normal((m, rank)) / np.sqrt(m), rng.standard_normal((rank, n)) / np.sqrt(rank))
            for m, n in shapes]


def _starts(algorithm, options, layers, budgets, sizes, merged):
    """[client][layer] (B, A) each client starts from, per the reference's configure_round."""
    algo = get_algorithm(algorithm, **options)
    problem = TaskProblem([np.zeros((B.shape[0], A.shape[1])) for B, A in layers], [None] * len(budgets), sizes)
    probe = AggregationTask(algorithm, options, RANK, SCALING, budgets, sizes, layers, merged, [])
    config = task_config(probe)
    state = algo.init(problem, config)
    state.layers = layers
    return [[(f.B, f.A) for f in p.factors] for p in algo.configure_round(state, problem, config, 0,
                                                                            list(range(len(budgets))))]


def aggregation_task(algorithm: str, options: dict, tag: int = 0, untrained: bool = False,
                     budgets=BUDGETS, sizes=SIZES, label: str = "") -> AggregationTask:
    """An aggregation task on the battery's fixed shapes: random server factors and uploads.

    Each client's upload is what the reference hands it (``configure_round``) moved by a random
    step; with ``untrained`` it is that start unchanged (a round with learning rate 0). FlexLoRA's
    untrained starts are the rank-k_i truncations of a random rank-r update, split as declared.
    The layers are SHAPES, the rank RANK, the scaling SCALING; FLoRA gets a random merged update,
    the others zeros.

    Parameters
    ----------
    algorithm : str
        The baseline.
    options : dict
        Its declared variant, every option filled in.
    tag : int, default 0
        Keys the random draws (seed ``[20, tag]``): the same tag gives the same task.
    untrained : bool, default False
        Uploads equal the clients' starts.
    budgets : sequence of int, default BUDGETS
        k_i per client.
    sizes : sequence of int, default SIZES
        n_i per client.
    label : str, default ""
        The task's label (default ``"untrained"`` or ``"random-<tag>"``).

    Returns
    -------
    AggregationTask
    """
    rng = _rng(tag)
    budgets = tuple(budgets)
    layers = _factors(rng, SHAPES, RANK)
    merged = ([0.1 * rng.standard_normal(s) for s in SHAPES] if algorithm == "flora"
              else [np.zeros(s) for s in SHAPES])
    probe = AggregationTask(algorithm, options, RANK, SCALING, budgets, sizes, layers, merged, [])
    if algorithm == "flexlora" and untrained:
        old = [SCALING * (B @ A) for B, A in _factors(rng, SHAPES, RANK)]
        starts = [[truncated_factors(dW, k, coefficient(probe, k), split=options["split"]) for dW in old]
                  for k in budgets]
    else:
        starts = _starts(algorithm, options, layers, budgets, sizes, merged)
    if untrained:
        trained = [[(B.copy(), A.copy()) for B, A in client] for client in starts]
    else:
        trained = [[(B + 0.3 * rng.standard_normal(B.shape) / np.sqrt(B.shape[0]),
                     A + 0.3 * rng.standard_normal(A.shape)) for B, A in client] for client in starts]
    return AggregationTask(algorithm, dict(options), RANK, SCALING, budgets, tuple(sizes), layers, merged, trained,
                           label or ("untrained" if untrained else f"random-{tag}"))


def rounds_task(algorithm: str, options: dict, rounds: int = 3) -> RoundsTask:
    """Whole rounds on quadratic client objectives with different optima (heterogeneous clients).

    The base weights, the clients' oracles and the initial factors (A = 0) come from a fixed seed;
    clients take 3 SGD steps of size 0.1 per round; FLoRA's fresh pairs are drawn with seed 7
    (:func:`~fslora_ref.conformance.baselines.reference.task_fresh_pairs`).

    Parameters
    ----------
    algorithm : str
        The baseline.
    options : dict
        Its declared variant, every option filled in.
    rounds : int, default 3
        How many rounds.

    Returns
    -------
    RoundsTask
    """
    rng = _rng(100)
    base = [rng.standard_normal(s) / np.sqrt(s[0]) for s in SHAPES]
    oracles = [QuadraticOracle([0.3 * rng.standard_normal(s) for s in SHAPES], curvature=1.0,
                               center=[rng.standard_normal(s) for s in SHAPES]) for _ in BUDGETS]
    layers = [(rng.uniform(-1, 1, (m, RANK)) / np.sqrt(m), np.zeros((RANK, n))) for m, n in SHAPES]
    fresh = task_fresh_pairs(algorithm, RANK, BUDGETS, SHAPES, rounds, seed=7)
    return RoundsTask(algorithm, dict(options), RANK, SCALING, BUDGETS, SIZES, layers, base, oracles, lr=0.1,
                      local_steps=3, rounds=rounds, fresh_pairs=fresh, label="rounds")
