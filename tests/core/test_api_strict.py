"""The public API raises ValueError/TypeError naming the argument instead of coercing values,
overflowing or attempting absurd allocations (issue 11's cases, one by one)."""
from __future__ import annotations

import numpy as np
import pytest

from fslora_ref import FedConfig, Sketch, budgets_from_ratios, make_problem, sample_sketch, stream
from fslora_ref.conformance.session import Options


@pytest.mark.parametrize("call,exc,words", [
    (lambda: Sketch(8, [1.7, 2.2]), TypeError, ["indices must be integers"]),
    (lambda: Sketch(8, [True, False]), TypeError, ["indices must be integers"]),
    (lambda: Sketch(2**70, [0]), ValueError, ["rank", "65536"]),
    (lambda: stream(0, round=1.7, client=0, purpose="sketch"), TypeError, ["round must be an integer"]),
    (lambda: stream(0, round=float("inf"), client=0, purpose="sketch"), TypeError, ["round must be an integer"]),
    (lambda: stream(0, round=0, client=-2, purpose="sketch"), ValueError, ["client", "[-1, inf]"]),
    (lambda: stream(0, round=0, client=0, purpose=["sketch"]), ValueError, ["purpose must be one of"]),
    (lambda: budgets_from_ratios(-4, [0.5], 2), ValueError, ["rank must be an integer in [1, 65536], got -4"]),
    (lambda: budgets_from_ratios(8, [], 2), ValueError, ["ratios must hold at least one"]),
    (lambda: budgets_from_ratios(2**2000, [0.5], 2), ValueError, ["rank"]),
    (lambda: budgets_from_ratios(8, [float("nan")], 2), ValueError, ["ratios[0]"]),
    (lambda: budgets_from_ratios(8, "0.5", 2), TypeError, ["ratios must be a sequence"]),
    (lambda: budgets_from_ratios(8, [0.5], 2.0), TypeError, ["n_clients must be an integer"]),
    (lambda: sample_sketch(8, 2, None), TypeError, ["rng must be a numpy.random.Generator"]),
    (lambda: sample_sketch(2**80, 2, np.random.default_rng(0)), ValueError, ["rank"]),
    (lambda: make_problem("least_squares", size_spread=37), ValueError, ["size_spread", "[0, 3]"]),
    (lambda: make_problem("least_squares", m=2**19, n=2**19), ValueError, ["base weights", "GiB", "dimensions"]),
    (lambda: make_problem("least_squares", n_clients=2**20, mean_size=2**20), ValueError, ["clients' data", "GiB"]),
    (lambda: make_problem("least_squares", noise=float("inf")), ValueError, ["noise"]),
    (lambda: make_problem(["least_squares"]), ValueError, ["family must be one of"]),
    (lambda: FedConfig(rank=4, budgets=5), TypeError, ["budgets must be a sequence"]),
    (lambda: FedConfig(rank=4, budgets="12"), TypeError, ["budgets must be a sequence"]),
    (lambda: FedConfig(rank=4, budgets=[1], extra={"x": object()}), TypeError, ["extra must hold only JSON"]),
    (lambda: FedConfig(rank=4, budgets=[1], extra={"x": float("nan")}), TypeError, ["extra must hold only JSON"]),
    (lambda: FedConfig(rank=4, budgets=[1], client_optimizer=["sgd"]), ValueError, ["client_optimizer"]),
    (lambda: Options(seed=1.5), TypeError, ["seed must be an integer"]),
    (lambda: Options(seed=-1), ValueError, ["seed must be an integer in [0, "]),
])
def test_public_api_raises_instead_of_coercing(call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for w in words:
        assert w in str(info.value), (w, str(info.value))


def test_valid_values_still_work():
    assert Sketch(8, np.array([3, 1], dtype=np.int32)).indices.tolist() == [1, 3]
    assert budgets_from_ratios(8, (0.125, 1), 3) == [1, 8, 1]
    assert np.isfinite(stream(0, round=-1, client=-1, purpose="init").standard_normal())
