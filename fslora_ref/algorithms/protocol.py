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

from dataclasses import dataclass, field

import numpy as np

from ..client import local_train, trainable_state_floats
from ..config import FedConfig
from ..lora import LayerFactors, init_lora
from ..seeding import SERVER, stream
from ..validation import check_choice

# How a rank-q client adapter is scaled (docs/spec.md §5): "constant" uses the server's s at every
# rank; "rslora" uses alpha / sqrt(q) with alpha = s sqrt(r) (PEFT use_rslora=True at the client's
# own rank, as the FSLoRA paper's code builds every baseline adapter), i.e. s sqrt(r / q).
SCALINGS = ("rslora", "constant")


@dataclass
class ServerState:
    """What the server holds between rounds."""

    layers: list                                # [(B_l: (m_l, r), A_l: (r, n_l))]
    extra: dict = field(default_factory=dict)   # algorithm-specific (merged weights, optimiser state)


@dataclass
class ClientPlan:
    """What client ``client`` receives for one round and how the server will read its upload."""

    client: int
    factors: list                       # [LayerFactors] the client starts from
    indices: list                       # [index array into the server's rank-r factors, or None]
    masks: list | None = None           # full-size masked form: [(col_mask, row_mask)]
    download_floats: int = 0            # what this client must receive
    broadcast_floats: int = 0           # the paper's full broadcast of the server state


@dataclass
class Upload:
    """A client's result: trained factors, their change, and what it costs to send."""

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
        layers = [init_lora(m, n, config.rank, stream(config.seed, round=-1, client=SERVER, layer=l, purpose="init"))
                  for l, (m, n) in enumerate(problem.layer_shapes)]
        return ServerState(layers)

    def configure_round(self, state, problem, config, round_index, participants) -> list:
        raise NotImplementedError

    def client_update(self, plan: ClientPlan, problem, config: FedConfig, round_index: int) -> Upload:
        rng = stream(config.seed, round=round_index, client=plan.client, purpose="batch")
        optimizer = config.make_client_optimizer()
        trained, losses = local_train(problem, plan.client, plan.factors, steps=config.local_steps,
                                      optimizer=optimizer, rng=rng, masks=plan.masks, round_index=round_index)
        deltas = [(B - f.B, A - f.A) for (B, A), f in zip(trained, plan.factors)]
        if plan.masks is not None:  # masked form: upload only the selected block
            deltas = [(dB[:, I], dA[I, :]) for (dB, dA), I in zip(deltas, plan.indices)]
        shapes = [(f.B.shape[0], f.B.shape[1], f.A.shape[1]) for f in plan.factors]
        return Upload(plan.client, trained, deltas,
                      upload_floats=sum(dB.size + dA.size for dB, dA in deltas),
                      memory_floats=trainable_state_floats(shapes, optimizer), losses=losses)

    def aggregate(self, state, plans, uploads, config) -> ServerState:
        raise NotImplementedError

    def global_weights(self, state, problem, config) -> list:
        """The server's model per layer: W0 + s B A, or W0 + Delta W (see :meth:`dense_update`)."""
        dense = self.dense_update(state)
        if dense is not None:
            return [W0 + dW for W0, dW in zip(problem.base_weights, dense)]
        s = config.lora_scaling
        return [W0 + s * (B @ A) for W0, (B, A) in zip(problem.base_weights, state.layers)]

    def global_factors(self, state) -> list | None:
        """The server's rank-r (B, A) per layer, or None if the algorithm keeps none."""
        return state.layers

    def dense_update(self, state) -> list | None:
        """The server's update Delta W_l: (m_l, n_l) per layer when its model is W0 + Delta W
        rather than W0 + s B A (FlexLoRA's averaged products, FLoRA's merged stacks); None when
        the model is W0 + s B A."""
        return None

    def evaluate_extra(self, state, problem, config) -> dict:
        """The algorithm's own history entries for the server ``state`` (keys of
        ``fslora_ref.history.HISTORY_KEYS``); none by default."""
        return {}


def rank_coefficient(config, q: int, scaling: str) -> float:
    """The coefficient of a rank-q adapter: s ("constant") or s sqrt(r / q) ("rslora")."""
    check_choice("scaling", scaling, SCALINGS)
    return config.lora_scaling * (np.sqrt(config.rank / q) if scaling == "rslora" else 1.0)


def client_weights(sizes, weighting: str) -> np.ndarray:
    """Aggregation weights of the participants: 1/|P| ("uniform") or n_i / sum_P n_j ("data_size").

    sizes: (|P|,) data sizes of the participants, in upload order."""
    check_choice("weighting", weighting, ("uniform", "data_size"))
    sizes = np.asarray(sizes, dtype=float)
    return np.full(sizes.size, 1.0 / sizes.size) if weighting == "uniform" else sizes / sizes.sum()


def lora_floats(layers, ranks) -> int:
    """Floats of rank-q_l factors over layers: sum_l q_l (m_l + n_l)."""
    return int(sum(q * (B.shape[0] + A.shape[1]) for (B, A), q in zip(layers, ranks)))


def scatter_mean(state: ServerState, plans, uploads, config) -> list:
    """(1/|P|) sum_i scatter(delta_i) per layer: the average full-size delta over participants."""
    total = [(np.zeros_like(B), np.zeros_like(A)) for B, A in state.layers]
    for plan, up in zip(plans, uploads):
        for l, ((dB, dA), I) in enumerate(zip(up.deltas, plan.indices)):
            total[l][0][:, I] += dB
            total[l][1][I, :] += dA
    count = len(uploads)
    return [(dB / count, dA / count) for dB, dA in total]


def apply_server_step(state: ServerState, mean_deltas, config) -> ServerState:
    """X + mean delta (Algorithm 1), or a server optimiser step on the pseudo-gradient."""
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
    """Unsketched LayerFactors of the whole server state (copies)."""
    coeff = config.lora_scaling * np.ones(config.rank)
    return [LayerFactors(B.copy(), A.copy(), coeff) for B, A in state.layers]
