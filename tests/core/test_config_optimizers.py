"""FedConfig's optimiser hyperparameters (AdamW's betas/eps, the Adam server's): used by the
optimisers it makes, validated, and part of a run's identity only when set."""
from __future__ import annotations

import pytest

from fslora_ref import FedConfig, get_algorithm, least_squares, run
from fslora_ref.checkpoint import checkpoint_path
from fslora_ref.config import OPTIMIZER_DEFAULTS
from fslora_ref.optim import AdamW, ServerOptimizer

BASE = dict(rank=4, budgets=[1, 2], local_steps=2, lr=0.01, rounds=2)


def test_defaults_are_the_optimisers_and_leave_to_json_as_before():
    config = FedConfig(**BASE, client_optimizer="adamw", server_optimizer="adam", server_lr=0.1)
    assert config.make_client_optimizer() == AdamW(0.01)
    assert config.make_server_optimizer() == ServerOptimizer("adam", 0.1)
    assert not set(OPTIMIZER_DEFAULTS) & set(config.to_json())  # the identity of older runs is unchanged


def test_set_values_reach_the_optimisers_and_the_identity():
    config = FedConfig(**BASE, client_optimizer="adamw", betas=[0.8, 0.95], eps=1e-6, server_optimizer="adam",
                       server_betas=(0.5, 0.9), server_eps=1e-5)
    assert config.make_client_optimizer() == AdamW(0.01, 0.8, 0.95, 1e-6)
    assert config.make_server_optimizer() == ServerOptimizer("adam", 1.0, 0.5, 0.9, 1e-5)
    d = config.to_json()
    assert (d["betas"], d["eps"], d["server_betas"], d["server_eps"]) == ([0.8, 0.95], 1e-6, [0.5, 0.9], 1e-5)
    assert FedConfig.from_json(d) == config and config.betas == (0.8, 0.95)


@pytest.mark.parametrize("field, value, message", [
    ("betas", (0.9, 1.0), "betas must be two numbers in [0, 1)"),
    ("betas", 0.9, "betas must be a pair (beta1, beta2)"),
    ("server_betas", (-0.1, 0.9), "server_betas must be two numbers in [0, 1)"),
    ("eps", 0.0, "eps must be a finite number > 0"),
    ("server_eps", float("nan"), "server_eps must be a finite number > 0"),
])
def test_bad_values_name_the_field(field, value, message):
    with pytest.raises((TypeError, ValueError)) as err:
        FedConfig(**BASE, **{field: value})
    assert message in str(err.value)


def test_a_checkpoint_resumes_only_with_the_same_betas(tmp_path):
    problem = least_squares(n_clients=2, m=5, n=3, seed=0)
    config = FedConfig(**BASE, client_optimizer="adamw", betas=(0.8, 0.9))
    path = checkpoint_path(tmp_path, "fslora")
    run(get_algorithm("fslora"), problem, config, checkpoint=path, stop_after=1)
    with pytest.raises(ValueError, match=r"differing fields: betas \(\[0.8, 0.9\] in the checkpoint, absent now\)"):
        run(get_algorithm("fslora"), problem, config.replace(betas=(0.9, 0.999)), checkpoint=path, resume=True)
    resumed = run(get_algorithm("fslora"), problem, config, checkpoint=path, resume=True)
    assert resumed.rows == run(get_algorithm("fslora"), problem, config).rows
