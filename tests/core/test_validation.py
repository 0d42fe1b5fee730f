"""Every bad input named by issue 2 raises ValueError/TypeError naming the parameter and range."""
from __future__ import annotations

import numpy as np
import pytest

from fslora_ref import DivergenceError, FedConfig, get_algorithm, least_squares, run, sample_sketch
from fslora_ref.problems import ClientData, Problem

OK = dict(rank=4, budgets=[1, 2], local_steps=2, lr=0.01, rounds=1)


@pytest.mark.parametrize("changes,exc,words", [
    (dict(budgets=[0, 2]), ValueError, ["budgets[0]", "[1, 4]"]),
    (dict(budgets=[1, 5]), ValueError, ["budgets[1]", "[1, 4]"]),
    (dict(rank=0, budgets=[1]), ValueError, ["rank", "[1, 65536]"]),
    (dict(rank=4.0), TypeError, ["rank", "integer"]),
    (dict(budgets=[1.5, 2]), TypeError, ["budgets[0]", "integer"]),
    (dict(lr=0.0), ValueError, ["lr", "> 0"]),
    (dict(lr=-0.1), ValueError, ["lr", "> 0"]),
    (dict(lr=float("nan")), ValueError, ["lr", "finite"]),
    (dict(local_steps=0), ValueError, ["local_steps", "[1, 100000]"]),
    (dict(budgets=[]), ValueError, ["budgets", "n_clients >= 1"]),
    (dict(client_fraction=0.0), ValueError, ["client_fraction", "(0, 1]"]),
    (dict(client_optimizer="adam"), ValueError, ["client_optimizer"]),
    (dict(server_optimizer="rmsprop"), ValueError, ["server_optimizer"]),
    (dict(rounds=-1), ValueError, ["rounds"]),
    (dict(seed=-3), ValueError, ["seed"]),
])
def test_config_errors_name_parameter_and_range(changes, exc, words):
    with pytest.raises(exc) as info:
        FedConfig(**dict(OK, **changes))
    for w in words:
        assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("r,k,exc,words", [
    (8, 0, ValueError, ["k", "[1, 8]"]), (8, 9, ValueError, ["k", "[1, 8]"]),
    (0, 1, ValueError, ["rank", "[1, 65536]"]), (8, 2.0, TypeError, ["k", "integer"]),
])
def test_sketch_errors(r, k, exc, words):
    with pytest.raises(exc) as info:
        sample_sketch(r, k, np.random.default_rng(0))
    for w in words:
        assert w in str(info.value)


def test_problem_shape_mismatch_and_non_finite():
    W0 = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"clients\[0\].X must have shape \(any, 3\)"):
        Problem("p", [W0], [ClientData(np.zeros((5, 4)), np.zeros((5, 2)))])
    bad = np.zeros((5, 3))
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"clients\[0\].X must contain only finite values"):
        Problem("p", [W0], [ClientData(bad, np.zeros((5, 2)))])
    with pytest.raises(ValueError, match=r"base_weights\[0\] must contain only finite"):
        Problem("p", [np.full((3, 2), np.inf)], [ClientData(np.zeros((5, 3)), np.zeros((5, 2)))])
    with pytest.raises(ValueError, match="n_clients must be >= 1"):
        Problem("p", [W0], [])


def test_problem_family_arguments():
    with pytest.raises(ValueError, match=r"n_clients must be an integer in \[1, 1048576\]"):
        least_squares(n_clients=0)
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, "):
        least_squares(n_clients=2, mean_size=8, size_spread=0.0, batch_size=100)


def test_budgets_must_match_clients():
    problem = least_squares(n_clients=3, seed=0)
    with pytest.raises(ValueError, match=r"budgets must have one entry per client \(3\), got 2"):
        run(get_algorithm("fslora"), problem, FedConfig(**OK))


def test_divergence_names_round_and_client():
    problem = least_squares(n_clients=2, seed=0)
    config = FedConfig(rank=4, budgets=[1, 4], local_steps=5, lr=50.0, rounds=5)
    with pytest.raises(DivergenceError, match=r"fslora diverged in round \d+: .* client \d+'s local training .*--lr"):
        run(get_algorithm("fslora"), problem, config)


def test_unknown_algorithm():
    with pytest.raises(ValueError, match="algorithm must be one of"):
        get_algorithm("fedprox")
