"""The round's hot-path shortcuts change no number: a full-batch Problem gets no batch generator,
sample_sketch skips re-validating its own draws, and reuse_sketch_draws hands out the same draws again.
Each is checked against the general path it shortcuts."""
from __future__ import annotations

import numpy as np
import pytest

from fslora_ref import FedConfig, least_squares, run_round
from fslora_ref.algorithms import FSLoRA
from fslora_ref.algorithms.fslora import draw_round_sketches, reuse_sketch_draws
from fslora_ref.algorithms.protocol import batch_stream
from fslora_ref.seeding import stream
from fslora_ref.sketch import Sketch, sample_sketch


class Forwarding:
    """Any problem object that is not a reference Problem: it gets the general path (a real stream)."""

    def __init__(self, problem):
        self._problem = problem

    def __getattr__(self, name):
        return getattr(self._problem, name)

    def sample_batch(self, client, rng):
        return self._problem.sample_batch(client, rng)


def _round(problem, config, t=2):
    algo = FSLoRA()
    state = algo.init(problem, config)
    return run_round(algo, state, problem, config, t)[0].layers


@pytest.mark.parametrize("batch_size", [None, 4])
def test_the_batch_stream_shortcut_changes_no_number(batch_size):
    problem = least_squares(n_clients=3, m=5, n=4, mean_size=12, batch_size=batch_size, seed=1)
    config = FedConfig(rank=4, budgets=(2, 3, 4), local_steps=3, lr=0.05, rounds=4, seed=5)
    direct, general = _round(problem, config), _round(Forwarding(problem), config)
    for (B1, A1), (B2, A2) in zip(direct, general):
        assert np.array_equal(B1, B2) and np.array_equal(A1, A2)
    rng = batch_stream(problem, config, 2, 1)
    if batch_size is None:
        assert rng is None
    else:
        assert np.array_equal(rng.integers(1 << 30, size=4),
                              stream(5, round=2, client=1, purpose="batch").integers(1 << 30, size=4))
    assert isinstance(batch_stream(Forwarding(problem), config, 2, 1), np.random.Generator)


def test_sample_sketch_draws_what_the_validated_constructor_builds():
    for seed in range(20):
        S = sample_sketch(8, 1 + seed % 8, stream(seed, round=0, client=0, purpose="sketch"))
        T = Sketch(8, stream(seed, round=0, client=0, purpose="sketch").choice(8, size=1 + seed % 8, replace=False))
        assert S.rank == T.rank and S.indices.dtype == T.indices.dtype == np.int64
        assert np.array_equal(S.indices, T.indices)


def test_reused_draws_are_the_same_draws_shared_read_only_and_only_inside_the_block():
    config = FedConfig(rank=6, budgets=(2, 5), local_steps=1, lr=0.1, rounds=3, seed=3)
    fresh = draw_round_sketches(config, 1, 1, 2)
    with reuse_sketch_draws():
        first = draw_round_sketches(config, 1, 1, 2)
        with reuse_sketch_draws():          # a nested block shares the outer one's draws
            again = draw_round_sketches(config, 1, 1, 2)
        other = draw_round_sketches(config.replace(seed=4), 1, 1, 2)
        with pytest.raises(TypeError, match="round"):   # a cached key does not let round=1.0 through
            draw_round_sketches(config, 1.0, 1, 2)
    assert [S.indices.tolist() for S in first] == [S.indices.tolist() for S in fresh]
    assert all(a is b for a, b in zip(first, again))
    assert not any(S.indices.flags.writeable for S in first)
    assert [S.indices.tolist() for S in other] != [S.indices.tolist() for S in first]
    after = draw_round_sketches(config, 1, 1, 2)
    assert all(a is not b for a, b in zip(after, first)) and all(S.indices.flags.writeable for S in after)


def test_a_round_inside_the_reuse_block_is_bit_identical():
    problem = least_squares(n_clients=2, m=5, n=3, mean_size=10, seed=2)
    config = FedConfig(rank=4, budgets=(2, 3), local_steps=2, lr=0.05, rounds=3, seed=9)
    outside = _round(problem, config)
    with reuse_sketch_draws():
        inside = [_round(problem, config), _round(problem, config.replace(lr=0.05))]
    for layers in inside:
        for (B1, A1), (B2, A2) in zip(outside, layers):
            assert np.array_equal(B1, B2) and np.array_equal(A1, A2)
