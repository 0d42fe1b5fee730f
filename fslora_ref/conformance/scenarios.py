"""The rounds the battery hands out: fixed, seeded, small, and built so that every selected
coordinate moves.

The global A is nonzero (unlike LoRA's init A = 0) and every gradient is generic, so in one
local step column j of B moves by -lr s sigma_j G a_j^T and row j of A by -lr s sigma_j b_j^T G,
both nonzero with probability one; ``check_*`` functions also verify this on the reference
update before trusting an inferred index set.
"""
from __future__ import annotations

import numpy as np

from ..problems import least_squares, two_layer
from ..seeding import SERVER, stream
from .protocol import ProblemOracle, QuadraticOracle, RoundTask

BATTERY_SEED = 20250131


def _rng(tag: int, seed: int = BATTERY_SEED) -> np.random.Generator:
    return stream(seed, round=tag, client=SERVER, purpose="problem")


def random_factors(shapes, rank: int, rng, dtype) -> list:
    """[(B: (m, r), A: (r, n))] with B ~ U(-1, 1)/sqrt(m), A ~ N(0, 1/r), in ``dtype``."""
    return [((rng.uniform(-1, 1, (m, rank)) / np.sqrt(m)).astype(dtype),
             (rng.standard_normal((rank, n)) / np.sqrt(rank)).astype(dtype)) for m, n in shapes]


def random_index_sets(rank: int, budgets, n_layers: int, rng) -> list:
    """[client][layer] sorted k_i-subsets of {0..r-1}."""
    return [[np.sort(rng.choice(rank, size=k, replace=False)) for _ in range(n_layers)] for k in budgets]


def _task(label, problem_weights, oracles, layers, budgets, rank, rng, dtype, **kw) -> RoundTask:
    return RoundTask(layers=layers, base_weights=[W.astype(dtype) for W in problem_weights], oracles=oracles,
                     budgets=tuple(budgets), rank=rank, index_sets=random_index_sets(rank, budgets, len(layers), rng),
                     label=label, **kw)


def two_layer_round(dtype) -> RoundTask:
    """Four clients of the two-layer family (tanh between layers), r = 6, budgets 1, 2, 4, 6, H = 3."""
    problem = two_layer(n_clients=4, m=6, hidden=10, n=5, mean_size=12, seed=3)
    rng = _rng(1)
    rank = 6
    return _task("two_layer", problem.base_weights, [ProblemOracle(problem, i) for i in range(4)],
                 random_factors(problem.layer_shapes, rank, rng, dtype), (1, 2, 4, 6), rank, rng, dtype,
                 lr=0.1, local_steps=3, lora_scaling=0.5)


def weight_decay_round(dtype) -> RoundTask:
    """Three least-squares clients, r = 8, budgets 2, 4, 5, H = 2, weight decay 0.2."""
    problem = least_squares(n_clients=3, m=8, n=6, mean_size=12, seed=4)
    rng = _rng(2)
    rank = 8
    return _task("least_squares_wd", problem.base_weights, [ProblemOracle(problem, i) for i in range(3)],
                 random_factors(problem.layer_shapes, rank, rng, dtype), (2, 4, 5), rank, rng, dtype,
                 lr=0.05, local_steps=2, lora_scaling=1.0, weight_decay=0.2)


def constant_gradient_round(dtype) -> RoundTask:
    """Constant gradients G_il (linear losses), two layers, r = 8, budgets 1, 3, 4, 8, H = 1:
    one step moves B_I by exactly -lr s (r/k) G A_I^T, the probe for the r/k scale."""
    rng = _rng(3)
    shapes, rank, budgets = [(7, 5), (5, 4)], 8, (1, 3, 4, 8)
    oracles = [QuadraticOracle([rng.standard_normal(sh) for sh in shapes]) for _ in budgets]
    W0 = [rng.standard_normal(sh) / np.sqrt(sh[0]) for sh in shapes]
    return _task("constant_gradient", W0, oracles, random_factors(shapes, rank, rng, dtype), budgets, rank, rng,
                 dtype, lr=0.05, local_steps=1, lora_scaling=0.5)


def full_rank_round(dtype) -> RoundTask:
    """``two_layer_round`` with every k_i = r (FSLoRA must then be FedAvg of full LoRA), H = 2."""
    base = two_layer_round(dtype)
    r = base.rank
    return RoundTask(**{**base.__dict__, "budgets": (r,) * base.n_clients, "local_steps": 2, "label": "full_rank",
                        "index_sets": [[np.arange(r)] * base.n_layers for _ in range(base.n_clients)]})


WHITE_BOX_ROUNDS = (two_layer_round, weight_decay_round)


# -- black box --------------------------------------------------------------------------------
DEFAULT_BLACK_BOX_SHAPES = ((12, 10), (8, 9))
BLACK_BOX_BUDGETS = (2, 3, 4, 6)
BLACK_BOX_RANK = 8


def blocks(size: int, n_clients: int) -> list:
    """Disjoint contiguous blocks of range(size), one per client."""
    return np.array_split(np.arange(size), n_clients)


def black_box_round(dtype, shapes=DEFAULT_BLACK_BOX_SHAPES, rank: int = BLACK_BOX_RANK,
                    budgets=BLACK_BOX_BUDGETS, seed: int = 0) -> RoundTask:
    """The black-box round: client i's gradient lives on the block (rows R_i, columns C_i).

    Oracle i of layer l: f = <C, W> + (mu/2) ||M * (W - W0)||^2 with C and M supported on
    (R_i, C_i). Client i's local B then changes only on rows R_i and its A only on columns C_i,
    so the global change on those blocks is exactly client i's change / N: each client's index
    set and update can be read off the global result. Needs m_l, n_l >= N.
    """
    n_clients = len(budgets)
    for l, (m, n) in enumerate(shapes):
        if m < n_clients or n < n_clients:
            raise ValueError(f"black-box layer {l} must have m, n >= {n_clients} (one block per client), got {(m, n)}")
    rng = _rng(4)
    W0 = [(rng.standard_normal((m, n)) / np.sqrt(m)).astype(dtype) for m, n in shapes]
    oracles = []
    for i in range(n_clients):
        masks = []
        for m, n in shapes:
            M = np.zeros((m, n))
            M[np.ix_(blocks(m, n_clients)[i], blocks(n, n_clients)[i])] = 1.0
            masks.append(M)
        oracles.append(QuadraticOracle([M * rng.standard_normal(M.shape) for M in masks], masks, 0.5,
                                       [W.astype(float) for W in W0]))
    return RoundTask(layers=random_factors(shapes, rank, rng, dtype), base_weights=W0, oracles=oracles,
                     budgets=tuple(budgets), rank=rank, lr=0.05, local_steps=2, lora_scaling=0.5, seed=seed,
                     label="black_box")
