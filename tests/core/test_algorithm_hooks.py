"""The driver loop and the LLM bridge read the server's model through algorithm hooks
(has_trainable_factors, dense_update, evaluate_extra), never through the algorithm's name."""
from __future__ import annotations

import numpy as np
import pytest

from fslora_ref import FedConfig, get_algorithm, least_squares, run
from fslora_ref.algorithms import ALGORITHMS

PROBLEM = least_squares(n_clients=2, m=5, n=3, seed=0, batch_size=4)
CONFIG = FedConfig(rank=4, budgets=[1, 3], local_steps=2, lr=0.01, rounds=2)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_a_renamed_algorithm_records_the_same_history(name):
    renamed = type(f"Renamed{name}", (ALGORITHMS[name],), {"name": f"my-{name}"})()
    ours, theirs = run(get_algorithm(name), PROBLEM, CONFIG), run(renamed, PROBLEM, CONFIG)
    assert ours.rows == theirs.rows


def test_what_each_algorithm_records():
    h = {name: run(get_algorithm(name), PROBLEM, CONFIG) for name in ALGORITHMS}
    with_factor_grad = {n for n in h if all(v is not None for v in h[n]["grad_norm_factors"])}
    assert with_factor_grad == {"fslora", "fedit", "hetlora"}
    assert {n for n in h if h[n]["sketched_loss"][0] is not None} == {"fslora"}
    assert all(v is None for n in ("flexlora", "flora") for v in h[n]["grad_norm_factors"])


def test_an_algorithm_without_the_hooks_records_no_extras():
    class Plain(ALGORITHMS["fslora"]):
        has_trainable_factors = False

        def evaluate_extra(self, state, problem, config):
            return {}

    h = run(Plain(), PROBLEM, CONFIG)
    assert all(v is None for v in h["grad_norm_factors"] + h["sketched_loss"])
    assert h["loss"] == run(get_algorithm("fslora"), PROBLEM, CONFIG)["loss"]


@pytest.mark.parametrize("name", ["flexlora", "flora"])
def test_dense_update_is_the_model(name):
    algo = get_algorithm(name)
    state = run(algo, PROBLEM, CONFIG).final_state
    dense = algo.dense_update(state)
    weights = algo.global_weights(state, PROBLEM, CONFIG)
    assert dense is not None
    assert all(np.array_equal(W, W0 + dW) for W, W0, dW in zip(weights, PROBLEM.base_weights, dense))
    assert get_algorithm("fslora").dense_update(state) is None
