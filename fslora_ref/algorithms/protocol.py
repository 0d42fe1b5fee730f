"""The small protocol every federated LoRA algorithm implements (Flower-style split).

    state = algo.init(problem, config)
    plans = algo.configure_round(state, problem, config, round_index, participants)
    uploads = [algo.client_update(plan, problem, config, round_index) for plan in plans]
    state = algo.aggregate(state, plans, uploads, config)
    weights = algo.global_weights(state, problem, config)      # the model the server holds

``configure_round`` decides what each client receives and trains (this is where FSLoRA draws
its sketches); ``client_update`` is shared local training; ``aggregate`` is the server rule.

What the driver loop and the LLM bridge read about the server's model comes from the
algorithm too, never from its name: ``dense_update`` (the model is W0 + Delta W rather than
W0 + s B A), ``has_trainable_factors`` (the factor gradient is a meaningful statistic) and
``evaluate_extra`` (the algorithm's own history entries, e.g. FSLoRA's sketched loss).
"""
from __future__ import annotations

import collections
import contextlib
from dataclasses import dataclass, field

import numpy as np

from ..client import local_train, trainable_state_floats
from ..config import FedConfig
from ..lora import LayerFactors, init_lora
from ..problems.base import Problem
from ..seeding import SERVER, stream
from ..validation import check_choice

# How a rank-q client adapter is scaled (docs/spec.md §5): "constant" uses the server's s at every
# rank; "rslora" uses alpha / sqrt(q) with alpha = s sqrt(r) (PEFT use_rslora=True at the client's
# own rank, as the FSLoRA paper's code builds every baseline adapter), i.e. s sqrt(r / q).
SCALINGS = ("rslora", "constant")


@dataclass
class ServerState:
    """What the server holds between rounds.

    Parameters
    ----------
    layers : list of tuple of ndarray
        ``[(B_l, A_l)]`` per layer: B_l of shape (m_l, r), A_l of shape (r, n_l).
    extra : dict, optional
        Algorithm-specific state (merged weights, optimiser state).
    """

    layers: list                                # [(B_l: (m_l, r), A_l: (r, n_l))]
    extra: dict = field(default_factory=dict)   # algorithm-specific (merged weights, optimiser state)


@dataclass
class ClientPlan:
    """What client ``client`` receives for one round and how the server will read its upload.

    Parameters
    ----------
    client : int
        The client's index.
    factors : list of LayerFactors
        The factors the client starts from, per layer.
    indices : list
        Per layer, the index array into the server's rank-r factors the client's block maps to
        (None: the whole rank).
    masks : list of tuple of ndarray, optional
        Full-size masked form: ``[(col_mask, row_mask)]`` per layer, each of shape (r,).
    download_floats : int, default 0
        What this client must receive.
    broadcast_floats : int, default 0
        The paper's full broadcast of the server state.
    """

    client: int
    factors: list                       # [LayerFactors] the client starts from
    indices: list                       # [index array into the server's rank-r factors, or None]
    masks: list | None = None           # full-size masked form: [(col_mask, row_mask)]
    download_floats: int = 0            # what this client must receive
    broadcast_floats: int = 0           # the paper's full broadcast of the server state


@dataclass
class Upload:
    """A client's result: trained factors, their change, and what it costs to send.

    Parameters
    ----------
    client : int
        The client's index.
    trained : list of tuple of ndarray
        ``[(B, A)]`` per layer, as the client trained them.
    deltas : list of tuple of ndarray
        ``[(dB, dA)]`` per layer: the blocks the client uploads.
    upload_floats : int
        The floats uploaded.
    memory_floats : int
        Trainable parameters + gradients + optimiser state, in floats.
    losses : list of float
        The local loss before each step.
    """

    client: int
    trained: list          # [(B, A)] as the client trained them
    deltas: list           # [(dB, dA)] blocks the client uploads
    upload_floats: int
    memory_floats: int     # trainable parameters + gradients + optimiser state
    losses: list           # local loss before each step


class Algorithm:
    """Base class: LoRA init, shared local training, the server model as W0 + s B A.

    A subclass lists its variants in ``OPTIONS`` ({option: allowed values, the first the
    default}); ``Algorithm(**options)`` validates them and ``self.options`` holds every option's
    value (part of the run's identity in checkpoints, see ``federation.run``).

    Parameters
    ----------
    **options
        The variant options (keys of ``OPTIONS``); each left out takes its default.

    Raises
    ------
    ValueError
        For an unknown option or a value not among its allowed ones.
    """

    name = "base"
    # the server's rank-r (B, A) are what the clients train and the model is exactly W0 + s B A,
    # so ||grad_{[B;A]} f|| at them is recorded (history key grad_norm_factors)
    has_trainable_factors = True
    OPTIONS: dict = {}

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            known = ", ".join(f"{k} ({'|'.join(v)})" for k, v in self.OPTIONS.items()) or "none"
            raise ValueError(f"{self.name} has no option {unknown[0]!r}; its options: {known}")
        self.options = {k: check_choice(f"{self.name} {k}", options.get(k, values[0]), values)
                        for k, values in self.OPTIONS.items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.options.items())})"

    def init(self, problem, config: FedConfig) -> ServerState:
        """The initial server state: rank-r LoRA factors per layer (from the ``"init"`` streams).

        Parameters
        ----------
        problem : Problem
            The problem (its ``layer_shapes``).
        config : FedConfig
            The run's configuration (rank, seed).

        Returns
        -------
        ServerState
        """
        layers = [init_lora(m, n, config.rank, stream(config.seed, round=-1, client=SERVER, layer=l, purpose="init"))
                  for l, (m, n) in enumerate(problem.layer_shapes)]
        return ServerState(layers)

    def configure_round(self, state, problem, config, round_index, participants) -> list:
        """What each participant receives and trains in round ``round_index``.

        Parameters
        ----------
        state : ServerState
            The server state before the round.
        problem : Problem
            The problem.
        config : FedConfig
            The run's configuration.
        round_index : int
            The round (keys its random streams).
        participants : list of int
            The clients taking part (``config.participants(round_index)``).

        Returns
        -------
        list of ClientPlan
            One per participant, in order.
        """
        raise NotImplementedError

    def client_update(self, plan: ClientPlan, problem, config: FedConfig, round_index: int) -> Upload:
        """Local training of one client on its plan (:func:`fslora_ref.client.local_train`).

        Parameters
        ----------
        plan : ClientPlan
            What the client received.
        problem : Problem
            The problem.
        config : FedConfig
            The run's configuration (local steps, client optimiser).
        round_index : int
            The round (keys the client's batch stream).

        Returns
        -------
        Upload
            The trained factors, the uploaded blocks and their costs.
        """
        batches = reused_batches(problem, config, round_index, plan.client)
        rng = None if batches is not None else batch_stream(problem, config, round_index, plan.client)
        optimizer = config.make_client_optimizer()
        trained, losses = local_train(problem, plan.client, plan.factors, steps=config.local_steps,
                                      optimizer=optimizer, rng=rng, masks=plan.masks, round_index=round_index,
                                      batches=batches)
        deltas = [(B - f.B, A - f.A) for (B, A), f in zip(trained, plan.factors)]
        if plan.masks is not None:  # masked form: upload only the selected block
            deltas = [(dB[:, I], dA[I, :]) for (dB, dA), I in zip(deltas, plan.indices)]
        shapes = [(f.B.shape[0], f.B.shape[1], f.A.shape[1]) for f in plan.factors]
        return Upload(plan.client, trained, deltas,
                      upload_floats=sum(dB.size + dA.size for dB, dA in deltas),
                      memory_floats=trainable_state_floats(shapes, optimizer), losses=losses)

    def aggregate(self, state, plans, uploads, config) -> ServerState:
        """The server rule: the new state from the round's uploads.

        Parameters
        ----------
        state : ServerState
            The server state before the round.
        plans : list of ClientPlan
            The round's plans.
        uploads : list of Upload
            The participants' uploads, in the order of ``plans``.
        config : FedConfig
            The run's configuration.

        Returns
        -------
        ServerState
        """
        raise NotImplementedError

    def global_weights(self, state, problem, config) -> list:
        """The server's model per layer: W0 + s B A, or W0 + Delta W (see :meth:`dense_update`).

        Parameters
        ----------
        state : ServerState
            The server state.
        problem : Problem
            The problem (its ``base_weights`` W0).
        config : FedConfig
            The run's configuration (``lora_scaling`` s).

        Returns
        -------
        list of ndarray
            Per layer, shape (m_l, n_l).
        """
        dense = self.dense_update(state)
        if dense is not None:
            return [W0 + dW for W0, dW in zip(problem.base_weights, dense)]
        s = config.lora_scaling
        return [W0 + s * (B @ A) for W0, (B, A) in zip(problem.base_weights, state.layers)]

    def global_factors(self, state) -> list | None:
        """The server's rank-r factors, if the algorithm keeps them.

        Parameters
        ----------
        state : ServerState
            The server state.

        Returns
        -------
        list of tuple of ndarray or None
            ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l); None if the algorithm keeps none.
        """
        return state.layers

    def dense_update(self, state) -> list | None:
        """The server's dense update, when its model is W0 + Delta W rather than W0 + s B A.

        Parameters
        ----------
        state : ServerState
            The server state.

        Returns
        -------
        list of ndarray or None
            Delta W_l of shape (m_l, n_l) per layer (FlexLoRA's averaged products, FLoRA's
            merged stacks); None when the model is W0 + s B A.
        """
        return None

    def evaluate_extra(self, state, problem, config) -> dict:
        """The algorithm's own history entries for the server ``state``.

        Parameters
        ----------
        state : ServerState
            The server state.
        problem : Problem
            The problem.
        config : FedConfig
            The run's configuration.

        Returns
        -------
        dict
            Values by key of ``fslora_ref.history.HISTORY_KEYS``; empty by default.
        """
        return {}


def batch_stream(problem, config: FedConfig, round_index: int, client: int):
    """The client's minibatch stream of ``round_index``, or None when nothing would be drawn from it.

    A full-batch reference ``Problem`` (``batch_size`` None, its own ``sample_batch``) never reads
    the stream, and building a generator costs more than a small client's local step; any other
    problem gets the stream.

    Parameters
    ----------
    problem : Problem
        The problem (or anything with ``sample_batch``).
    config : FedConfig
        The run's configuration (its seed).
    round_index : int
        The round.
    client : int
        The client.

    Returns
    -------
    numpy.random.Generator or None
        The ``"batch"`` stream of (seed, round, client), or None (full batch).
    """
    if getattr(type(problem), "sample_batch", None) is Problem.sample_batch and problem.batch_size is None:
        return None
    return stream(config.seed, round=round_index, client=client, purpose="batch")


_REUSED_BATCHES: collections.OrderedDict | None = None
_BATCH_REUSE_LIMIT = 1 << 15     # keys kept (H small index arrays each, ~40 MB at most); the oldest go first


@contextlib.contextmanager
def reuse_batch_draws():
    """Within the block, :meth:`Algorithm.client_update` draws each client's minibatches of a round once
    per (seed, round, client, client size, batch size, H) and hands out the same draws afterwards.

    A reference ``Problem``'s minibatches are a pure function of that key (the client's own
    ``"batch"`` stream, read only by ``sample_batch``), not of the algorithm, the step size or the
    iterates, so the runs of one seed (every arm of a claim, every step of a tuning grid) get
    bit-identical batches without a new generator and H draws per client and round. Only a problem
    whose ``sample_batch`` is the reference's and that draws minibatches is served from the memo;
    the cached index arrays are read-only; at most ``_BATCH_REUSE_LIMIT`` keys are kept, the oldest
    dropped first, and all of them when the outermost block ends.

    Yields
    ------
    None
    """
    global _REUSED_BATCHES
    outer = _REUSED_BATCHES
    if outer is None:
        _REUSED_BATCHES = collections.OrderedDict()
    try:
        yield
    finally:
        if outer is None:
            _REUSED_BATCHES = None


def reused_batches(problem, config: FedConfig, round_index: int, client: int):
    """The client's H minibatches of ``round_index`` from the :func:`reuse_batch_draws` memo, or None.

    None (draw them from :func:`batch_stream` as usual) outside a reuse block, for a problem that is
    not a reference ``Problem`` with minibatches, or for a non-integer key (which the stream rejects).

    Parameters
    ----------
    problem : Problem
        The problem.
    config : FedConfig
        The run's configuration (seed, local steps H).
    round_index : int
        The round.
    client : int
        The client.

    Returns
    -------
    tuple of ndarray or None
        H read-only index arrays, each of shape (batch_size,), the draws ``problem.sample_batch``
        makes in turn from the client's batch stream.
    """
    memo = _REUSED_BATCHES
    if (memo is None or getattr(type(problem), "sample_batch", None) is not Problem.sample_batch
            or problem.batch_size is None or type(round_index) is not int or type(client) is not int):
        return None
    steps = config.local_steps
    key = (config.seed, round_index, client, problem.clients[client].size, problem.batch_size, steps)
    hit = memo.get(key)
    if hit is None:
        rng = stream(config.seed, round=round_index, client=client, purpose="batch")
        hit = tuple(problem.sample_batch(client, rng) for _ in range(steps))
        for rows in hit:   # shared by every later run of the same round: nobody may write into them
            rows.flags.writeable = False
        if len(memo) >= _BATCH_REUSE_LIMIT:
            memo.popitem(last=False)
        memo[key] = hit
    return hit


def rank_coefficient(config, q: int, scaling: str) -> float:
    """The coefficient of a rank-q adapter.

    Parameters
    ----------
    config : FedConfig
        The run's configuration (rank r, ``lora_scaling`` s).
    q : int
        The adapter's rank.
    scaling : {"rslora", "constant"}
        See ``SCALINGS``.

    Returns
    -------
    float
        s ("constant") or s sqrt(r / q) ("rslora").
    """
    check_choice("scaling", scaling, SCALINGS)
    return config.lora_scaling * (np.sqrt(config.rank / q) if scaling == "rslora" else 1.0)


def client_weights(sizes, weighting: str) -> np.ndarray:
    """Aggregation weights of the participants.

    Parameters
    ----------
    sizes : array_like, shape (P,)
        Data sizes of the participants, in upload order.
    weighting : {"uniform", "data_size"}
        ``1/P`` each, or ``n_i / sum_j n_j`` over the P participants.

    Returns
    -------
    ndarray, shape (P,)
        Weights summing to 1.
    """
    check_choice("weighting", weighting, ("uniform", "data_size"))
    sizes = np.asarray(sizes, dtype=float)
    return np.full(sizes.size, 1.0 / sizes.size) if weighting == "uniform" else sizes / sizes.sum()


def lora_floats(layers, ranks) -> int:
    """Floats of rank-q_l factors over layers: sum_l q_l (m_l + n_l).

    Parameters
    ----------
    layers : list of tuple of ndarray
        ``[(B_l, A_l)]``; only their shapes (m_l, .) and (., n_l) are read.
    ranks : list of int
        q_l per layer.

    Returns
    -------
    int
    """
    return int(sum(q * (B.shape[0] + A.shape[1]) for (B, A), q in zip(layers, ranks)))


def scatter_mean(state: ServerState, plans, uploads, config) -> list:
    """``(1/|P|) sum_i scatter(delta_i)`` per layer: the average full-size delta over participants.

    Parameters
    ----------
    state : ServerState
        The server state (its factors' shapes).
    plans : list of ClientPlan
        The round's plans (their ``indices`` place each block).
    uploads : list of Upload
        The uploads, in the order of ``plans``.
    config : FedConfig
        The run's configuration (unused by the average; kept for the common signature).

    Returns
    -------
    list of tuple of ndarray
        ``[(mean dB_l, mean dA_l)]``, shapes (m_l, r) and (r, n_l).
    """
    total = [(np.zeros_like(B), np.zeros_like(A)) for B, A in state.layers]
    for plan, up in zip(plans, uploads):
        for l, ((dB, dA), I) in enumerate(zip(up.deltas, plan.indices)):
            total[l][0][:, I] += dB
            total[l][1][I, :] += dA
    count = len(uploads)
    return [(dB / count, dA / count) for dB, dA in total]


def apply_server_step(state: ServerState, mean_deltas, config) -> ServerState:
    """X + mean delta (Algorithm 1), or a server optimiser step on the pseudo-gradient.

    Parameters
    ----------
    state : ServerState
        The server state before the round (its ``extra["server_opt"]`` optimiser state).
    mean_deltas : list of tuple of ndarray
        ``[(dB_l, dA_l)]``, e.g. from :func:`scatter_mean`.
    config : FedConfig
        The run's configuration (the server optimiser).

    Returns
    -------
    ServerState
        The stepped factors, with the optimiser state in ``extra["server_opt"]``.
    """
    server_opt = config.make_server_optimizer()
    params = [p for pair in state.layers for p in pair]
    deltas = [d for pair in mean_deltas for d in pair]
    opt_state = state.extra.get("server_opt")
    if opt_state is None:
        opt_state = server_opt.init(params)
    new, opt_state = server_opt.apply(params, deltas, opt_state)
    extra = dict(state.extra, server_opt=opt_state)
    return ServerState([(new[2 * l], new[2 * l + 1]) for l in range(len(state.layers))], extra)


def full_rank_factors(state: ServerState, config) -> list:
    """Unsketched LayerFactors of the whole server state (copies).

    Parameters
    ----------
    state : ServerState
        The server state.
    config : FedConfig
        The run's configuration (coeff = ``lora_scaling`` on every rank).

    Returns
    -------
    list of LayerFactors
    """
    coeff = config.lora_scaling * np.ones(config.rank)
    return [LayerFactors(B.copy(), A.copy(), coeff) for B, A in state.layers]
