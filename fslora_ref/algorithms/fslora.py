"""FSLoRA, Algorithm 1 of the paper (docs/spec.md §3), in a few lines.

Each round: for every participating client i and layer l, draw one random-k_i sketch S_il
(shared by that layer's B and A, fixed for the round); the client trains its rank-k_i block
(B_I, A_I) with coefficient s * r/k_i for H steps and uploads the block's change,
k_i (m_l + n_l) floats; the server scatters the blocks back and averages over the
participants (all N clients in Algorithm 1).

``config.form = "masked"`` runs Algorithm 1 as written instead: full-size B, A with
coefficient s * diag(S), gradients through the dense W = W0 + s B S A, updates restricted to
I. Identical iterates; it exists for teaching and cross-checking, not for speed.
"""
from __future__ import annotations

import collections
import contextlib

import numpy as np

from ..lora import LayerFactors, gather
from ..problems.sketched import global_sketched_loss
from ..seeding import stream
from ..sketch import sample_sketch
from .protocol import Algorithm, ClientPlan, apply_server_step, lora_floats, scatter_mean


def draw_round_sketches(config, round_index: int, client: int, n_layers: int) -> list:
    """The sketches of client ``client`` in ``round_index``: one per layer, from the
    (round, client, layer) sketch stream.

    Parameters
    ----------
    config : FedConfig
        The run's configuration (rank, the client's budget, seed).
    round_index : int
        The round.
    client : int
        The client.
    n_layers : int
        The number of layers.

    Returns
    -------
    list of Sketch
        One per layer, each with k = ``config.budgets[client]``. Inside :func:`reuse_sketch_draws`
        the same key returns the same (read-only) draws without drawing again.
    """
    k = config.budgets[client]
    memo = _REUSED_DRAWS
    key = None
    if memo is not None and type(round_index) is int and type(client) is int and type(n_layers) is int:
        key = (config.seed, round_index, client, n_layers, config.rank, k)
        hit = memo.get(key)
        if hit is not None:
            return list(hit)
    if key is None:
        sketches = [sample_sketch(config.rank, k, stream(config.seed, round=round_index, client=client, layer=l,
                                                         purpose="sketch"))
                    for l in range(n_layers)]
    else:
        sketches = [sample_sketch(config.rank, k, _reused_stream(config.seed, round_index, client, l))
                    for l in range(n_layers)]
    if key is not None:
        for S in sketches:   # shared by every later run of the same round: nobody may write into them
            S.indices.flags.writeable = False
        if len(memo) >= _REUSE_LIMIT:
            memo.popitem(last=False)
        memo[key] = tuple(sketches)
    return sketches


_REUSED_DRAWS: collections.OrderedDict | None = None
_REUSE_LIMIT = 1 << 17       # keys kept (~40 MB at most); the oldest go first
_REUSED_STREAMS: collections.OrderedDict | None = None
_STREAM_REUSE_LIMIT = 1 << 15   # generators kept (~1 KB each); the oldest go first


def _reused_stream(seed: int, round_index: int, client: int, layer: int):
    """The (seed, round, client, layer) sketch stream at its first draw, inside :func:`reuse_sketch_draws`.

    Arms with another budget k_i draw other sketches from the same stream: the generator is built
    once per key (a SeedSequence hash costs ~10x a state reset) and reset to its initial state for
    each later use. The caller draws from it at once and keeps nothing, so no draw sees a state
    another caller left.
    """
    streams = _REUSED_STREAMS
    key = (seed, round_index, client, layer)
    hit = streams.get(key)
    if hit is None:
        rng = stream(seed, round=round_index, client=client, layer=layer, purpose="sketch")
        if len(streams) >= _STREAM_REUSE_LIMIT:
            streams.popitem(last=False)
        streams[key] = (rng, rng.bit_generator.state)
        return rng
    rng, initial = hit
    rng.bit_generator.state = initial
    return rng


@contextlib.contextmanager
def reuse_sketch_draws():
    """Within the block, :func:`draw_round_sketches` draws each (seed, round, client, layers, r, k_i)
    key once and hands out the same draws afterwards.

    A round's sketches are a pure function of that key (its own stream), not of the iterates, so a
    process that re-runs the same rounds at other step sizes or horizons (``fslora verify``: the
    corollary's T values, the step-size grids) gets bit-identical draws without the cost of a new
    generator per client and layer; a key drawn at another budget k_i reuses its stream's generator,
    reset to its initial state (:func:`_reused_stream`). The cached index arrays are read-only; at most ``_REUSE_LIMIT``
    keys are kept, the oldest dropped first, and all of them when the outermost block ends.

    Yields
    ------
    None
    """
    global _REUSED_DRAWS, _REUSED_STREAMS
    outer = _REUSED_DRAWS
    if outer is None:
        _REUSED_DRAWS, _REUSED_STREAMS = collections.OrderedDict(), collections.OrderedDict()
    try:
        yield
    finally:
        if outer is None:
            _REUSED_DRAWS = _REUSED_STREAMS = None


def sketched_factors(layers, sketches, lora_scaling: float, form: str) -> tuple:
    """What a client trains from the server's factors under one sketch S_l per layer.

    Parameters
    ----------
    layers : list of tuple of ndarray
        ``[(B_l, A_l)]``, shapes (m_l, r) and (r, n_l).
    sketches : list of Sketch
        One per layer.
    lora_scaling : float
        s.
    form : {"submatrix", "masked"}
        "submatrix": the blocks B_I, shape (m_l, k), and A_I, shape (k, n_l), with coefficient
        s r/k; "masked": full-size copies with coefficient s diag(S_l).

    Returns
    -------
    factors : list of LayerFactors
        One per layer.
    masks : list of tuple of ndarray or None
        None for "submatrix"; for "masked", ``[(I as a column mask, I as a row mask)]``, each of
        shape (r,), that confine the updates to I.
    """
    if form == "submatrix":
        return [LayerFactors(*gather(B, A, S), lora_scaling * S.scale * np.ones(S.k))
                for (B, A), S in zip(layers, sketches)], None
    factors = [LayerFactors(B.copy(), A.copy(), lora_scaling * S.diagonal()) for (B, A), S in zip(layers, sketches)]
    return factors, [(S.mask(), S.mask()) for S in sketches]


class FSLoRA(Algorithm):
    """FSLoRA (Algorithm 1): each client trains the sketched rank-k_i block of the server's
    rank-r factors; the server averages the scattered block changes.

    Parameters
    ----------
    **options
        None accepted: FSLoRA has no variant options (``get_algorithm("fslora")``).
    """

    name = "fslora"

    def configure_round(self, state, problem, config, round_index, participants):
        s = config.lora_scaling
        broadcast = lora_floats(state.layers, [config.rank] * len(state.layers))   # the same for every client
        plans = []
        for i in participants:
            sketches = draw_round_sketches(config, round_index, i, len(state.layers))
            factors, masks = sketched_factors(state.layers, sketches, s, config.form)
            plans.append(ClientPlan(i, factors, [S.indices for S in sketches], masks,
                                    download_floats=lora_floats(state.layers, [S.k for S in sketches]),
                                    broadcast_floats=broadcast))
        return plans

    def aggregate(self, state, plans, uploads, config):
        return apply_server_step(state, scatter_mean(state, plans, uploads, config), config)

    def evaluate_extra(self, state, problem, config) -> dict:
        """The sketched objective f^S at the server's factors.

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
            ``{"sketched_loss": value}``, the value None when it has no exact value.
        """
        return {"sketched_loss": global_sketched_loss(problem, state.layers, config)}
