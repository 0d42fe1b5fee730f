"""One bridge round in float64 equals the fslora_ref round with the same seed (<= 1e-10 rel.)."""
import numpy as np
import pytest

from fslora_ref.algorithms import get_algorithm
from fslora_ref.config import FedConfig
from fslora_ref.federation import run_round
from fslora_ref.problems import least_squares, two_layer
from llm_bridge.federated import TorchClients
from llm_bridge.peft_layers import LoraLayers
from llm_bridge.reference_task import ProblemTask, torch_model_for

CASES = [  # (algorithm, client optimiser, extra config)
    ("fslora", "sgd", {}),
    ("fslora", "adamw", {"weight_decay": 0.01}),
    ("fslora", "sgd", {"form": "masked"}),
    ("fslora", "adamw", {"form": "masked"}),
    ("fslora", "adamw", {"client_fraction": 0.5, "server_optimizer": "adam", "server_lr": 0.05}),
    ("fedit", "sgd", {}),
    ("fedit", "adamw", {}),
    ("hetlora", "sgd", {}),
    ("hetlora", "adamw", {}),
    ("flexlora", "sgd", {}),
    ("flora", "adamw", {}),
]


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def server_arrays(name, state):
    if name == "flexlora" and "delta_W" in state.extra:
        return list(state.extra["delta_W"])
    if name == "flora":
        return list(state.extra["merged"])
    return [x for pair in state.layers for x in pair]


def run_both(problem, algo_name, optimizer, extra, rounds=2, options=None):
    lr = 0.05 if optimizer == "sgd" else 0.01
    config = FedConfig(rank=8, budgets=[1, 2, 4, 6], local_steps=3, lr=lr, rounds=rounds, seed=11,
                       lora_scaling=0.5, client_optimizer=optimizer, **extra)
    algo = get_algorithm(algo_name, **(options or {}))
    layers = LoraLayers(torch_model_for(problem, config.rank, config.lora_scaling))
    assert layers.scaling == config.lora_scaling and layers.rank == config.rank
    bridge = TorchClients(algo, layers, ProblemTask(problem))
    ref_state = bridge_state = algo.init(problem, config)
    for t in range(rounds):
        ref_state, _, ref_up = run_round(algo, ref_state, problem, config, t)
        bridge_state, _, br_up = run_round(bridge, bridge_state, problem, config, t)
    return ref_state, bridge_state, ref_up, br_up


@pytest.mark.parametrize("algo_name,optimizer,extra", CASES)
def test_bridge_round_equals_reference_round(algo_name, optimizer, extra):
    problem = least_squares(n_clients=4, m=12, n=10, mean_size=24, batch_size=8, seed=3)
    ref_state, bridge_state, ref_up, br_up = run_both(problem, algo_name, optimizer, extra)
    ref_arrays, br_arrays = server_arrays(algo_name, ref_state), server_arrays(algo_name, bridge_state)
    assert any(np.linalg.norm(x) > 0 for x in ref_arrays)
    for a, b in zip(br_arrays, ref_arrays):
        assert rel(a, b) <= 1e-10
    for u, v in zip(br_up, ref_up):
        assert u.client == v.client and u.upload_floats == v.upload_floats and u.memory_floats == v.memory_floats
        assert np.allclose(u.losses, v.losses, rtol=1e-10, atol=0)


@pytest.mark.parametrize("algo_name,options", [("hetlora", {"aggregate": "matrix", "scaling": "constant"}),
                                               ("flexlora", {"weighting": "data_size", "split": "balanced",
                                                             "scaling": "constant"}),
                                               ("flora", {"weighting": "data_size", "scaling": "constant"}),
                                               ("fedit", {"weighting": "data_size"})])
def test_bridge_round_equals_reference_round_for_every_variant(algo_name, options):
    """The non-default rules too (the defaults are the CASES above): the bridge reuses the reference's
    server, and its clients install whatever coefficient the plan carries."""
    problem = least_squares(n_clients=4, m=12, n=10, mean_size=24, batch_size=8, seed=3)
    ref_state, bridge_state, _, _ = run_both(problem, algo_name, "adamw", {}, options=options)
    for a, b in zip(server_arrays(algo_name, bridge_state), server_arrays(algo_name, ref_state)):
        assert rel(a, b) <= 1e-10


@pytest.mark.parametrize("algo_name", ["fslora", "hetlora"])
def test_two_layer_network_equivalence(algo_name):
    """Two LoRA layers with tanh between them: each layer's own sketch, same iterates."""
    problem = two_layer(n_clients=4, m=6, hidden=10, n=5, mean_size=20, batch_size=6, seed=5)
    ref_state, bridge_state, _, _ = run_both(problem, algo_name, "adamw", {})
    for a, b in zip(server_arrays(algo_name, bridge_state), server_arrays(algo_name, ref_state)):
        assert rel(a, b) <= 1e-10


def test_equivalence_check_has_teeth():
    """A bridge that mis-scales the rank-k copy (s instead of s r/k) is far from the reference."""
    problem = least_squares(n_clients=4, m=12, n=10, mean_size=24, batch_size=8, seed=3)
    config = FedConfig(rank=8, budgets=[1, 2, 4, 6], local_steps=3, lr=0.05, rounds=2, seed=11, lora_scaling=0.5)
    algo = get_algorithm("fslora")
    layers = LoraLayers(torch_model_for(problem, config.rank, config.lora_scaling))

    class Unscaled(TorchClients):
        def client_update(self, plan, problem, config, round_index):
            plan.factors = [f._replace(coeff=f.coeff * len(f.coeff) / config.rank) for f in plan.factors]
            return super().client_update(plan, problem, config, round_index)

    state = algo.init(problem, config)
    ref, bad = state, state
    for t in range(2):
        ref, _, _ = run_round(algo, ref, problem, config, t)
        bad, _, _ = run_round(Unscaled(algo, layers, ProblemTask(problem)), bad, problem, config, t)
    assert max(rel(a, b) for a, b in zip(server_arrays("fslora", bad), server_arrays("fslora", ref))) > 1e-3


@pytest.mark.parametrize("algo_name", ["fslora", "fedit", "hetlora", "flexlora", "flora"])
def test_installed_global_model_is_the_reference_global_model(algo_name):
    """What the bridge evaluates (global_factors installed in the torch model) computes
    x W with W = the reference's algorithm.global_weights, for every algorithm."""
    import torch
    from llm_bridge.federated import global_factors
    problem = least_squares(n_clients=4, m=12, n=10, mean_size=24, batch_size=8, seed=3)
    _, bridge_state, _, _ = run_both(problem, algo_name, "sgd", {})
    config = FedConfig(rank=8, budgets=[1, 2, 4, 6], lora_scaling=0.5)
    algo = get_algorithm(algo_name)
    layers = LoraLayers(torch_model_for(problem, config.rank, config.lora_scaling))
    layers.install(global_factors(algo_name, bridge_state, config, problem.layer_shapes), trainable=False)
    X = problem.clients[0].X
    with torch.no_grad():
        got = layers.model(torch.tensor(X)).numpy()
    want = X @ algo.global_weights(bridge_state, problem, config)[0]
    assert rel(got, want) <= 1e-12
    assert rel(want, X @ problem.base_weights[0]) > 1e-6   # the update is not negligible
