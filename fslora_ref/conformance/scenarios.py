"""The rounds the battery hands out, built so that every selected coordinate moves: fixed probe
rounds (each aimed at one defect) and randomised scenarios drawn from ``Options.seed``
(hypothesis-style, as array-api-tests: N from 1 to 12, r from 2 to 32 including 12, 16, 32 and
non-powers of two, 1 to 3 non-square layers, unequal budgets including k = 1 and k = r, H up to 8).
The battery, not the implementation, chooses every shape; ``BUDGETS`` says how many scenarios
and how much statistical power a run buys.

The global A is nonzero (unlike LoRA's init A = 0) and every gradient is generic, so in one
local step column j of B moves by -lr s sigma_j G a_j^T and row j of A by -lr s sigma_j b_j^T G,
both nonzero with probability one; ``check_*`` functions also verify this on the reference
update before trusting an inferred index set.
"""
from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from ..problems import least_squares, two_layer
from ..seeding import SERVER, stream
from .protocol import ProblemOracle, QuadraticOracle, RoundTask

BATTERY_SEED = 20250131


def _rng(tag: int, seed: int = BATTERY_SEED) -> np.random.Generator:
    return stream(seed, round=tag, client=SERVER, purpose="problem")


def random_factors(shapes, rank: int, rng, dtype) -> list:
    """Random global factors: B ~ U(-1, 1)/sqrt(m), A ~ N(0, 1/r), in ``dtype``.

    Parameters
    ----------
    shapes : list of tuple of int
        ``[(m_l, n_l)]``.
    rank : int
        r.
    rng : numpy.random.Generator
    dtype : numpy dtype
        The implementation's dtype.

    Returns
    -------
    list of tuple of ndarray
        ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l).
    """
    return [((rng.uniform(-1, 1, (m, rank)) / np.sqrt(m)).astype(dtype),
             (rng.standard_normal((rank, n)) / np.sqrt(rank)).astype(dtype)) for m, n in shapes]


def random_index_sets(rank: int, budgets, n_layers: int, rng) -> list:
    """Random index sets: sorted k_i-subsets of {0..r-1}.

    Parameters
    ----------
    rank : int
        r.
    budgets : iterable of int
        k_i per client.
    n_layers : int
    rng : numpy.random.Generator

    Returns
    -------
    list of list of ndarray
        ``[client][layer]``.
    """
    return [[np.sort(rng.choice(rank, size=k, replace=False)) for _ in range(n_layers)] for k in budgets]


def stable_lr(layers, budgets, rank: int, scaling: float, curvature: float, cap: float) -> float:
    """A step size at which H local steps stay stable for every client: the curvature of the loss in one
    factor is about ``s^2 (r/k)^2 mu ||other factor||_2^2``, largest for the smallest k.

    Parameters
    ----------
    layers : list of tuple of ndarray
        The global ``[(B_l, A_l)]``.
    budgets : iterable of int
        k_i per client.
    rank : int
        r.
    scaling : float
        s.
    curvature : float
        mu.
    cap : float
        The largest step size returned.

    Returns
    -------
    float
    """
    norms = max(max(np.linalg.norm(np.asarray(B, float), 2) ** 2, np.linalg.norm(np.asarray(A, float), 2) ** 2)
                for B, A in layers)
    curv = scaling ** 2 * (rank / min(budgets)) ** 2 * max(curvature, 0.1) * norms
    return float(min(cap, 0.5 / curv))


def _task(label, problem_weights, oracles, layers, budgets, rank, rng, dtype, **kw) -> RoundTask:
    return RoundTask(layers=layers, base_weights=[W.astype(dtype) for W in problem_weights], oracles=oracles,
                     budgets=tuple(budgets), rank=rank, index_sets=random_index_sets(rank, budgets, len(layers), rng),
                     label=label, **kw)


def two_layer_round(dtype) -> RoundTask:
    """Four clients of the two-layer family (tanh between layers), r = 6, budgets 1, 2, 4, 6, H = 3.

    Parameters
    ----------
    dtype : numpy dtype
        The implementation's dtype.

    Returns
    -------
    RoundTask
    """
    problem = two_layer(n_clients=4, m=6, hidden=10, n=5, mean_size=12, seed=3)
    rng = _rng(1)
    rank = 6
    return _task("two_layer", problem.base_weights, [ProblemOracle(problem, i) for i in range(4)],
                 random_factors(problem.layer_shapes, rank, rng, dtype), (1, 2, 4, 6), rank, rng, dtype,
                 lr=0.1, local_steps=3, lora_scaling=0.5)


def weight_decay_round(dtype) -> RoundTask:
    """Three least-squares clients, r = 8, budgets 2, 4, 5, H = 2, weight decay 0.2.

    Parameters
    ----------
    dtype : numpy dtype
        The implementation's dtype.

    Returns
    -------
    RoundTask
    """
    problem = least_squares(n_clients=3, m=8, n=6, mean_size=12, seed=4)
    rng = _rng(2)
    rank = 8
    return _task("least_squares_wd", problem.base_weights, [ProblemOracle(problem, i) for i in range(3)],
                 random_factors(problem.layer_shapes, rank, rng, dtype), (2, 4, 5), rank, rng, dtype,
                 lr=0.05, local_steps=2, lora_scaling=1.0, weight_decay=0.2)


def constant_gradient_round(dtype) -> RoundTask:
    """Constant gradients G_il (linear losses), two layers, r = 8, budgets 1, 3, 4, 8, H = 1:
    one step moves B_I by exactly -lr s (r/k) G A_I^T, the probe for the r/k scale.

    Parameters
    ----------
    dtype : numpy dtype
        The implementation's dtype.

    Returns
    -------
    RoundTask
    """
    rng = _rng(3)
    shapes, rank, budgets = [(7, 5), (5, 4)], 8, (1, 3, 4, 8)
    oracles = [QuadraticOracle([rng.standard_normal(sh) for sh in shapes]) for _ in budgets]
    W0 = [rng.standard_normal(sh) / np.sqrt(sh[0]) for sh in shapes]
    return _task("constant_gradient", W0, oracles, random_factors(shapes, rank, rng, dtype), budgets, rank, rng,
                 dtype, lr=0.05, local_steps=1, lora_scaling=0.5)


def full_rank_round(dtype) -> RoundTask:
    """``two_layer_round`` with every k_i = r (FSLoRA must then be FedAvg of full LoRA), H = 2.

    Parameters
    ----------
    dtype : numpy dtype
        The implementation's dtype.

    Returns
    -------
    RoundTask
    """
    base = two_layer_round(dtype)
    r = base.rank
    return RoundTask(**{**base.__dict__, "budgets": (r,) * base.n_clients, "local_steps": 2, "label": "full_rank",
                        "index_sets": [[np.arange(r)] * base.n_layers for _ in range(base.n_clients)]})


WHITE_BOX_ROUNDS = (two_layer_round, weight_decay_round)


# -- budgets and randomised scenarios ---------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    """What one run of the battery covers.

    Parameters
    ----------
    white_scenarios : int
        Randomised white-box rounds (round_matches_reference) besides the probes.
    black_scenarios : int
        Randomised black-box scenarios besides the statistical one.
    target_bias : float
        The statistical scenario runs enough joint rounds that its pooled inclusion test detects a
        relative inclusion bias this large (probability >= 0.9) for every budget with k/r in
        [1/4, 3/4].
    max_rounds : int
        The cap on those rounds.
    extra_rounds : int
        Joint rounds of each other black-box scenario.
    alone_rounds : int
        Rounds in which every client also runs alone (N = 1).
    compared_rounds : int
        Joint rounds per scenario compared with the reference round.
    """

    white_scenarios: int
    black_scenarios: int
    target_bias: float
    max_rounds: int
    extra_rounds: int
    alone_rounds: int
    compared_rounds: int


BUDGETS = {"quick": Budget(3, 2, 0.30, 400, 12, 10, 10),
           "default": Budget(6, 3, 0.15, 3000, 25, 20, 25),
           "thorough": Budget(12, 6, 0.10, 20000, 50, 50, 50)}
RANKS = (2, 3, 4, 5, 6, 7, 10, 12, 16, 20, 24, 32)
MAX_CLIENTS = 12
LAYOUTS = ("free", "llama")


def _scenario_rng(seed: int, kind: int, index: int) -> np.random.Generator:
    return stream(seed, round=10_000 * kind + index, client=SERVER, purpose="problem")


def _budgets(rng, rank: int, n_clients: int) -> tuple:
    """k_i in 1..r, unequal, with k = 1 and k = r among them once N >= 3, in random order."""
    ks = rng.integers(1, rank + 1, n_clients)
    if n_clients >= 3:
        ks[0], ks[1] = 1, rank
    return tuple(int(k) for k in rng.permutation(ks))


def _free_shapes(rng, n_layers: int, low: int) -> tuple:
    return tuple((int(rng.integers(low, low + 14)), int(rng.integers(low, low + 14))) for _ in range(n_layers))


def llama_shapes(rng, low: int) -> tuple:
    """The (in, out) of q_proj and v_proj of a one-layer Llama with head size 2, kv key-value heads,
    a = g kv attention heads (g in {1, 2}) and hidden size h a multiple of a (what transformers'
    LlamaConfig accepts), every size >= ``low``.

    Parameters
    ----------
    rng : numpy.random.Generator
    low : int
        The smallest size.

    Returns
    -------
    tuple
        ``((h, 2 a), (h, 2 kv))``.
    """
    kv = -(-low // 2) + int(rng.integers(0, 3))
    a = kv * int(rng.integers(1, 3))
    h = a * max(1, -(-low // a)) * int(rng.integers(1, 3))
    return ((h, 2 * a), (h, 2 * kv))


def random_white_box_round(dtype, seed: int, index: int) -> RoundTask:
    """White-box scenario ``index`` of run ``seed``: QuadraticOracle clients (random linear term and
    curvature on a random mask, so gradients change along the round). Anchors keep every run's
    coverage: scenario 0 has 5 <= N <= 7 and r = 16, scenario 1 r = 12, scenario 2 r = 32 and
    N >= 8, scenario 3 N = 1; the rest are drawn freely.

    Parameters
    ----------
    dtype : numpy dtype
        The implementation's dtype.
    seed : int
        The battery's seed.
    index : int
        The scenario.

    Returns
    -------
    RoundTask
    """
    rng = _scenario_rng(seed, 1, index)
    rank = {0: 16, 1: 12, 2: 32}.get(index, int(rng.choice(RANKS)))
    n_clients = {0: int(rng.integers(5, 8)), 2: int(rng.integers(8, MAX_CLIENTS + 1)), 3: 1}.get(
        index, int(rng.integers(1, MAX_CLIENTS + 1)))
    shapes = _free_shapes(rng, int(rng.integers(1, 4)), 2)
    budgets = _budgets(rng, rank, n_clients)
    oracles = []
    for _ in range(n_clients):
        masks = [(rng.uniform(size=sh) < 0.7).astype(float) for sh in shapes]
        oracles.append(QuadraticOracle([rng.standard_normal(sh) / np.sqrt(sh[0]) for sh in shapes], masks,
                                       float(rng.uniform(0.2, 1.0)), [rng.standard_normal(sh) for sh in shapes]))
    W0 = [rng.standard_normal(sh) / np.sqrt(sh[0]) for sh in shapes]
    wd = float(rng.choice([0.0, 0.1]))
    layers = random_factors(shapes, rank, rng, dtype)
    scaling = float(rng.choice([0.5, 1.0, 2.0]))
    lr = stable_lr(layers, budgets, rank, scaling, 1.0, float(rng.uniform(0.01, 0.05)))
    return _task(f"random_{index}", W0, oracles, layers, budgets, rank, rng, dtype, lr=lr,
                 local_steps=int(rng.integers(1, 9)), lora_scaling=scaling, weight_decay=wd)


@dataclass(frozen=True)
class BlackBoxSpec:
    """One black-box scenario: the same round (start, oracles) run ``rounds`` times with round_index
    0, 1, ... jointly (all N clients), and each client also alone in the first ``alone_rounds``.

    Parameters
    ----------
    label : str
        Names the scenario.
    rank : int
        r.
    budgets : tuple of int
        k_i per client.
    shapes : tuple of tuple of int
        ``(m_l, n_l)`` per layer.
    local_steps : int
        H.
    rounds : int
        Joint rounds.
    alone_rounds : int
        The first rounds in which each client also runs alone.
    statistical : bool, default False
        Whether it is the scenario the frequency test's power is stated for.
    """

    label: str
    rank: int
    budgets: tuple
    shapes: tuple
    local_steps: int
    rounds: int
    alone_rounds: int
    statistical: bool = False

    @property
    def n_clients(self) -> int:
        """N, the number of clients."""
        return len(self.budgets)

    def describe(self) -> str:
        """One line: label, N, r, budgets, H, layer shapes, rounds.

        Returns
        -------
        str
        """
        shapes = " ".join(f"({m}, {n})" for m, n in self.shapes)
        return (f"{self.label}: N={self.n_clients}, r={self.rank}, k={self.budgets}, H={self.local_steps}, layers "
                f"{shapes}, {self.rounds} joint rounds ({self.alone_rounds} with every client also alone)")


def _shapes(rng, layout: str, n_clients: int) -> tuple:
    low = 2 * n_clients   # blocks of >= 2 rows / columns per client
    return llama_shapes(rng, low) if layout == "llama" else _free_shapes(rng, int(rng.integers(1, 4)), low)


def statistical_black_box_spec(seed: int, layout: str = "free") -> BlackBoxSpec:
    """The scenario the frequency test's power is stated for: r in {12, 16}, 2 or 3 layers, 6 to 8 clients: one with
    k = 1, one with k = r, and 4 to 6 sharing two budgets in [r/4, 3r/4] (at least two clients each, so
    the pooled inclusion counts grow fast). Its rounds are set by ``black_box.statistical_rounds``.

    Parameters
    ----------
    seed : int
        The battery's seed.
    layout : {"free", "llama"}, default "free"
        The layer layout the implementation's model can take.

    Returns
    -------
    BlackBoxSpec
    """
    rng = _scenario_rng(seed, 2, 0)
    rank = int(rng.choice([12, 16]))
    mids = rng.choice(np.arange(-(-rank // 4), 3 * rank // 4 + 1), size=2, replace=False)
    n_mid = int(rng.integers(4, 7))
    first = int(rng.integers(2, n_mid - 1))
    budgets = [1, rank] + [int(mids[0])] * first + [int(mids[1])] * (n_mid - first)
    budgets = tuple(int(k) for k in rng.permutation(budgets))
    low = 2 * len(budgets)
    shapes = llama_shapes(rng, low) if layout == "llama" else _free_shapes(rng, int(rng.integers(2, 4)), low)
    return BlackBoxSpec("black_box_0", rank, budgets, shapes, int(rng.integers(1, 5)), 0, 0, statistical=True)


def extra_black_box_spec(seed: int, index: int, rounds: int, alone_rounds: int, layout: str = "free") -> BlackBoxSpec:
    """Black-box scenario ``index`` (>= 1): anchors r = 32 with N >= 8 (1), N = 1 at whichever of r = 12, 16
    the statistical scenario does not have (2), a non-power-of-two rank (3); the rest drawn freely.

    Parameters
    ----------
    seed : int
        The battery's seed.
    index : int
        The scenario (>= 1).
    rounds : int
        Its joint rounds.
    alone_rounds : int
        Its rounds with every client also alone.
    layout : {"free", "llama"}, default "free"

    Returns
    -------
    BlackBoxSpec
    """
    rng = _scenario_rng(seed, 2, index)
    other = 28 - statistical_black_box_spec(seed).rank   # 12 and 16 both appear in every run
    rank = {1: 32, 2: other, 3: int(rng.choice([5, 7, 10, 20, 24]))}.get(index, int(rng.choice(RANKS)))
    n_clients = {1: int(rng.integers(8, MAX_CLIENTS + 1)), 2: 1}.get(index, int(rng.integers(1, MAX_CLIENTS + 1)))
    budgets = _budgets(rng, rank, n_clients)
    return BlackBoxSpec(f"black_box_{index}", rank, budgets, _shapes(rng, layout, n_clients), int(rng.integers(1, 9)),
                        rounds, min(alone_rounds, rounds))


def blocks(size: int, n_clients: int) -> list:
    """Disjoint contiguous blocks of range(size), one per client.

    Parameters
    ----------
    size : int
    n_clients : int

    Returns
    -------
    list of ndarray
    """
    return np.array_split(np.arange(size), n_clients)


DEFAULT_BLACK_BOX_SHAPES = ((12, 10), (8, 9))
BLACK_BOX_BUDGETS = (2, 3, 4, 6)
BLACK_BOX_RANK = 8


def black_box_round(dtype, shapes=DEFAULT_BLACK_BOX_SHAPES, rank: int = BLACK_BOX_RANK,
                    budgets=BLACK_BOX_BUDGETS, seed: int = 0, local_steps: int = 2, label: str = "black_box",
                    problem_seed: int = BATTERY_SEED) -> RoundTask:
    """The black-box round: client i's gradient lives on the block (rows R_i, columns C_i).

    Oracle i of layer l: ``f = <C, W> + (mu/2) ||M * (W - W0)||^2`` with C and M supported on
    (R_i, C_i). Client i's local B then changes only on rows R_i and its A only on columns C_i,
    so the global change on those blocks is exactly client i's change / N: each client's index
    set and update can be read off the global result. Needs m_l, n_l >= N.

    Parameters
    ----------
    dtype : numpy dtype
        The implementation's dtype.
    shapes : tuple of tuple of int
        ``(m_l, n_l)`` per layer.
    rank : int
        r.
    budgets : tuple of int
        k_i per client.
    seed : int, default 0
        The task's seed (the implementation's own draws).
    local_steps : int, default 2
        H.
    label : str, default "black_box"
        Names the round.
    problem_seed : int, default BATTERY_SEED
        Keys the problem.

    Returns
    -------
    RoundTask
    """
    n_clients = len(budgets)
    for l, (m, n) in enumerate(shapes):
        if m < n_clients or n < n_clients:
            raise ValueError(f"black-box layer {l} must have m, n >= {n_clients} (one block per client), got {(m, n)}")
    rng = _rng(4, problem_seed)
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
    layers = random_factors(shapes, rank, rng, dtype)
    return RoundTask(layers=layers, base_weights=W0, oracles=oracles, budgets=tuple(budgets), rank=rank,
                     lr=stable_lr(layers, budgets, rank, 0.5, 0.5, 0.05), local_steps=local_steps, lora_scaling=0.5,
                     seed=seed, label=label)


def black_box_task(dtype, spec: BlackBoxSpec, seed: int) -> RoundTask:
    """The round of ``spec`` (its problem keyed on the battery seed and the scenario).

    Parameters
    ----------
    dtype : numpy dtype
        The implementation's dtype.
    spec : BlackBoxSpec
    seed : int
        The battery's seed.

    Returns
    -------
    RoundTask
    """
    return black_box_round(dtype, shapes=spec.shapes, rank=spec.rank, budgets=spec.budgets, seed=seed,
                           local_steps=spec.local_steps, label=spec.label,
                           problem_seed=(BATTERY_SEED + 7919 * seed + int(spec.label.rsplit("_", 1)[-1])) % 2**31)
