"""The expected values of the baseline battery: the reference algorithms (``fslora_ref.algorithms``)
run on a task, with the declared variant, and the known defects the diagnoses name.

``ReferenceBaseline("hetlora", aggregate="delta")`` is the reference behind the adapter protocol;
``fslora crosscheck --algorithm hetlora fslora_ref.conformance.baselines.reference:hetlora`` conforms.
"""
from __future__ import annotations

import itertools

import numpy as np

from ...algorithms import ALGORITHMS, get_algorithm
from ...algorithms.flora import fresh_pair
from ...algorithms.protocol import ServerState, Upload, client_weights
from ...client import local_train
from ...config import FedConfig
from ..protocol import OracleProblem
from .protocol import FACTOR_ALGORITHMS, AggregationTask, RoundsTask


class TaskProblem(OracleProblem):
    """What the reference algorithms read from a problem: shapes, base weights, client sizes, oracles.

    Parameters
    ----------
    base_weights : list of array_like
        ``[W0_l: (m_l, n_l)]``.
    oracles : list of callable or None
        One gradient oracle per client (None entries when only the aggregation runs).
    client_sizes : sequence of int
        n_i per client (read by data-size weights).
    """

    def __init__(self, base_weights, oracles, client_sizes):
        super().__init__(base_weights, oracles)
        self.client_sizes = list(client_sizes)


def task_config(task, rounds: int = 1, lr: float = 1.0, local_steps: int = 1, seed: int = 0) -> FedConfig:
    """The reference run's configuration for a task: its rank, budgets and scaling, a plain server.

    Parameters
    ----------
    task : AggregationTask or RoundsTask
        Its ``rank``, ``budgets`` and ``lora_scaling`` are used.
    rounds : int, default 1
        The number of rounds T.
    lr : float, default 1.0
        The clients' step size (unused by an aggregation alone).
    local_steps : int, default 1
        The local steps per round H.
    seed : int, default 0
        The run's seed.

    Returns
    -------
    FedConfig
    """
    return FedConfig(rank=task.rank, budgets=tuple(task.budgets), local_steps=local_steps, lr=lr, rounds=rounds,
                     seed=seed, lora_scaling=task.lora_scaling)


def _start_state(algo, problem, config, layers, merged=None) -> ServerState:
    state = algo.init(problem, config)
    state.layers = [(np.array(B, float), np.array(A, float)) for B, A in layers]
    if merged is not None and "merged" in state.extra:
        state.extra["merged"] = [np.array(M, float) for M in merged]
    return state


def read_output(algorithm: str, state: ServerState) -> dict:
    """What an implementation's ``aggregate`` must return, read from the reference's server state.

    Parameters
    ----------
    algorithm : str
        The baseline.
    state : ServerState
        The reference's state after aggregating.

    Returns
    -------
    dict
        ``{"layers": [(B_l: (m_l, r), A_l: (r, n_l))]}`` for fedit and hetlora;
        ``{"delta_W": [(m_l, n_l) arrays]}`` for flexlora (its ``delta_W``) and flora (its ``merged``).
        Copies, not views of the state.
    """
    if algorithm in FACTOR_ALGORITHMS:
        return {"layers": [(B.copy(), A.copy()) for B, A in state.layers]}
    key = "delta_W" if algorithm == "flexlora" else "merged"
    return {"delta_W": [x.copy() for x in state.extra[key]]}


def reference_aggregate(task: AggregationTask, options: dict | None = None) -> dict:
    """The reference's aggregation of the task's uploads.

    The reference algorithm starts from ``task.layers`` (and FLoRA's ``task.merged``), hands out the
    round exactly as its ``configure_round`` does, and aggregates the uploads ``task.trained``.

    Parameters
    ----------
    task : AggregationTask
        The uploads and the server state they were trained from.
    options : dict, optional
        The variant to aggregate with (default: ``task.options``); checks try other variants to name
        the one an implementation follows.

    Returns
    -------
    dict
        As :func:`read_output`.
    """
    algo = get_algorithm(task.algorithm, **(task.options if options is None else options))
    shapes = [(np.shape(B)[0], np.shape(A)[1]) for B, A in task.layers]
    problem = TaskProblem([np.zeros(s) for s in shapes], [None] * task.n_clients, task.client_sizes)
    config = task_config(task)
    state = _start_state(algo, problem, config, task.layers, task.merged)
    plans = algo.configure_round(state, problem, config, 0, list(range(task.n_clients)))
    uploads = []
    for plan, trained in zip(plans, task.trained):
        trained = [(np.array(B, float), np.array(A, float)) for B, A in trained]
        deltas = [(B - f.B, A - f.A) for (B, A), f in zip(trained, plan.factors)]
        uploads.append(Upload(plan.client, trained, deltas, 0, 0, []))
    return read_output(task.algorithm, algo.aggregate(state, plans, uploads, config))


def reference_rounds(task: RoundsTask, options: dict | None = None, defect: str | None = None) -> list:
    """The reference run of ``task.rounds`` whole rounds: the global update after each round.

    Every client takes ``task.local_steps`` full-batch SGD steps on its oracle from what its
    algorithm hands it (FLoRA: ``task.fresh_pairs[t][i]``), then the server aggregates.

    Parameters
    ----------
    task : RoundsTask
        The initial state, oracles, step size and rounds.
    options : dict, optional
        The variant to run (default: ``task.options``).
    defect : str, optional
        ``"no_reinit"``: FLoRA clients continue from last round's trained pair instead of a fresh one
        (a known bug, reproduced so a diagnosis can name it).

    Returns
    -------
    list of list of ndarray
        ``[round][layer]`` ``W_l^t - W0_l``, shape (m_l, n_l).
    """
    algo = get_algorithm(task.algorithm, **(task.options if options is None else options))
    problem = TaskProblem(task.base_weights, task.oracles, task.client_sizes)
    config = task_config(task, rounds=task.rounds, lr=task.lr, local_steps=task.local_steps)
    state = _start_state(algo, problem, config, task.layers)
    out, last = [], {}
    for t in range(task.rounds):
        plans = algo.configure_round(state, problem, config, t, list(range(task.n_clients)))
        if task.fresh_pairs:   # the fresh pairs the task handed out (FLoRA), or last round's (the defect)
            for p in plans:
                pairs = last[p.client] if defect == "no_reinit" and p.client in last else task.fresh_pairs[t][p.client]
                p.factors = [f._replace(B=np.array(B, float), A=np.array(A, float)) for f, (B, A) in zip(p.factors, pairs)]
        uploads = []
        for p in plans:
            trained, _ = local_train(problem, p.client, p.factors, steps=task.local_steps,
                                     optimizer=config.make_client_optimizer(), rng=None)
            deltas = [(B - f.B, A - f.A) for (B, A), f in zip(trained, p.factors)]
            uploads.append(Upload(p.client, trained, deltas, 0, 0, []))
            last[p.client] = trained
        state = algo.aggregate(state, plans, uploads, config)
        out.append([W - W0 for W, W0 in zip(algo.global_weights(state, problem, config), problem.base_weights)])
    return out


def task_fresh_pairs(algorithm: str, rank: int, budgets, shapes, rounds: int, seed: int) -> list:
    """The fresh LoRA pairs FLoRA's clients start each round from, as the reference draws them.

    Parameters
    ----------
    algorithm : str
        The baseline (only ``"flora"`` re-initialises).
    rank : int
        The global rank r.
    budgets : sequence of int
        k_i per client.
    shapes : list of tuple of int
        ``[(m_l, n_l)]`` per layer.
    rounds : int
        How many rounds to draw for.
    seed : int
        The run's seed (pairs come from the (round, client, layer) init streams).

    Returns
    -------
    list
        ``[round][client][layer]`` ``(B: (m_l, k_i), A: (k_i, n_l))`` for flora; ``[]`` otherwise.
    """
    if algorithm != "flora":
        return []
    config = FedConfig(rank=rank, budgets=tuple(budgets), seed=seed)
    return [[[fresh_pair(config, t, i, l, m, n, k) for l, (m, n) in enumerate(shapes)] for i, k in enumerate(budgets)]
            for t in range(rounds)]


def other_variants(algorithm: str, options: dict) -> list:
    """Every variant of ``algorithm`` other than ``options``, fewest differences first.

    Parameters
    ----------
    algorithm : str
        A registered baseline.
    options : dict
        The declared variant, every option filled in.

    Returns
    -------
    list of dict
        The other combinations of the algorithm's OPTIONS (stable order among equal distances).

    Examples
    --------
    >>> from fslora_ref.conformance.baselines.reference import other_variants
    >>> other_variants("hetlora", {"aggregate": "delta", "scaling": "rslora"})
    [{'aggregate': 'delta', 'scaling': 'constant'}, {'aggregate': 'matrix', 'scaling': 'rslora'},
     {'aggregate': 'matrix', 'scaling': 'constant'}]
    """
    spec = ALGORITHMS[algorithm].OPTIONS
    combos = [dict(zip(spec, values)) for values in itertools.product(*spec.values())]
    others = [c for c in combos if c != options]
    return sorted(others, key=lambda c: sum(c[k] != options[k] for k in c))


RULE_WORDS = {("aggregate", "matrix"): "averages the zero-padded client matrices",
              ("aggregate", "delta"): "averages the zero-padded changes",
              ("weighting", "data_size"): "weights clients by data size",
              ("weighting", "uniform"): "weights clients uniformly (1/N)",
              ("split", "on_B"): "puts the singular values on B",
              ("split", "balanced"): "splits sqrt(Sigma) between B and A",
              ("scaling", "rslora"): "scales a rank-q adapter by s sqrt(r/q) (rsLoRA)",
              ("scaling", "constant"): "scales every adapter by s"}


def describe_variant(declared: dict, found: dict) -> str:
    """Words for how a found variant differs from the declared one.

    Parameters
    ----------
    declared : dict
        The variant the implementation declares.
    found : dict
        The variant its results match (same keys).

    Returns
    -------
    str
        One clause per differing option, joined by ``"; "`` (``""`` if none differ).

    Examples
    --------
    >>> from fslora_ref.conformance.baselines.reference import describe_variant
    >>> describe_variant({"aggregate": "delta"}, {"aggregate": "matrix"})
    "aggregate='matrix' (averages the zero-padded client matrices) instead of the declared 'delta'"
    """
    parts = [f"{k}={v!r} ({RULE_WORDS.get((k, v), k)}) instead of the declared {declared[k]!r}"
             for k, v in found.items() if declared[k] != v]
    return "; ".join(parts)


def first_client_only(task: AggregationTask) -> list:
    """The outputs of a FedIT server that keeps only the first client's upload (a known bug).

    FedIT's path in ATP-1010/FederatedLLM ``fed_utils/model_aggregation.py`` ``FedAvg`` assigns the
    running sum to the misspelt ``weighted_sindgle_weights``, so only one client survives.

    Parameters
    ----------
    task : AggregationTask
        The uploads.

    Returns
    -------
    list of dict
        For fedit: ``{"layers": ...}`` holding p_0 X_0 (data-size weight), (1/N) X_0 and X_0, where X_0
        is client 0's trained factors; ``[]`` for the other baselines.
    """
    if task.algorithm != "fedit":
        return []
    out = []
    for weighting in ("data_size", "uniform"):
        p0 = client_weights(task.client_sizes, weighting)[0]
        out.append({"layers": [(p0 * np.asarray(B, float), p0 * np.asarray(A, float)) for B, A in task.trained[0]]})
    out.append({"layers": [(np.asarray(B, float), np.asarray(A, float)) for B, A in task.trained[0]]})
    return out


class ReferenceBaseline:
    """A reference baseline behind the adapter protocol (its expected values are its own).

    Parameters
    ----------
    algorithm : str
        The baseline, one of ``fslora_ref.conformance.baselines.protocol.BASELINES``.
    **options
        Its variant (e.g. ``aggregate="delta"``); omitted options take the reference defaults.

    Raises
    ------
    ValueError
        If an option or value is unknown.

    Examples
    --------
    >>> from fslora_ref.conformance.baselines.reference import ReferenceBaseline
    >>> ReferenceBaseline("hetlora", aggregate="delta").options["aggregate"]
    'delta'
    """

    def __init__(self, algorithm: str, **options):
        self.algorithm = algorithm
        self.options = get_algorithm(algorithm, **options).options
        self.name = f"reference {algorithm}" + "".join(f" {k}={v}" for k, v in self.options.items())

    def aggregate(self, task: AggregationTask):
        """The server's rule: :func:`reference_aggregate` with this variant.

        Parameters
        ----------
        task : AggregationTask

        Returns
        -------
        dict
            As :func:`read_output`.
        """
        return reference_aggregate(task, self.options)

    def run_rounds(self, task: RoundsTask):
        """Whole rounds: :func:`reference_rounds` with this variant.

        Parameters
        ----------
        task : RoundsTask

        Returns
        -------
        list of list of ndarray
            ``[round][layer]`` ``W_l^t - W0_l``, shape (m_l, n_l).
        """
        return reference_rounds(task, self.options)


fedit = ReferenceBaseline("fedit")
hetlora = ReferenceBaseline("hetlora")
flexlora = ReferenceBaseline("flexlora")
flora = ReferenceBaseline("flora")
