"""Invariants of every algorithm (docs/spec.md §5), each shown to fail on a realistic defect.

1. A no-op round (client learning rate 0, the real local-training path) leaves the server's model
   W0 + s B A unchanged for FSLoRA, FedIT, HetLoRA (delta rule) and FLoRA; FlexLoRA's model moves
   exactly to the weighted average of the participants' rank-k_i truncations of the old update.
2. At equal budgets k_i = r with default options each algorithm reduces to FedAvg where its source
   says it does: FSLoRA and HetLoRA to FedIT; FedIT to the mean of the clients' factors; FlexLoRA to
   the mean of the clients' products Delta W_i; FLoRA with its own (constant) scaling to the mean
   Delta W_i, and with the paper code's rsLoRA stack to that mean times sqrt(r / (N r)) = 1/sqrt(N).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from fslora_ref import FedConfig, least_squares, run_round, two_layer
from fslora_ref.algorithms import FedIT, FlexLoRA, FLoRA, FSLoRA, HetLoRA, get_algorithm
from fslora_ref.lora import dense_update

from tests.mutants import baseline_mutants as mutants


class ZeroStep:
    """A client optimiser with learning rate 0: every parameter stays where it is."""

    lr = 0.0
    state_floats_per_param = 0

    def init(self, params):
        return ()

    def update(self, grads, state, params, mask=None):
        return [p.copy() for p in params], state


@dataclass(frozen=True)
class FrozenClients(FedConfig):
    """The same run with client learning rate 0."""

    __hash__ = FedConfig.__hash__

    def make_client_optimizer(self):
        return ZeroStep()


BUDGETS = (2, 3, 5, 6)


def trained_state(algo, family=least_squares, budgets=BUDGETS, rounds=2, **kw):
    """(problem, config, state after ``rounds`` real rounds): a non-trivial server state."""
    problem = family(n_clients=len(budgets), seed=4, batch_size=8)
    config = FedConfig(rank=6, budgets=budgets, local_steps=3, lr=0.02, rounds=rounds + 1, seed=2, **kw)
    state = algo.init(problem, config)
    for t in range(rounds):
        state, _, _ = run_round(algo, state, problem, config, t)
    return problem, config, state


def noop_round(algo, problem, config, state, t):
    frozen = FrozenClients(**config.to_json())
    return run_round(algo, state, problem, frozen, t)


def rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# -- 1. no-op rounds -----------------------------------------------------------------------------
def check_noop_is_fixed_point(algo, family=least_squares, **kw):
    problem, config, state = trained_state(algo, family, **kw)
    before = algo.global_weights(state, problem, config)
    new, plans, uploads = noop_round(algo, problem, config, state, 2)
    for p, up in zip(plans, uploads):   # learning rate 0: every client uploads what it started from
        assert all(np.array_equal(B, f.B) and np.array_equal(A, f.A) for (B, A), f in zip(up.trained, p.factors))
    after = algo.global_weights(new, problem, config)
    for l, (W1, W0) in enumerate(zip(after, before)):
        moved = float(np.max(np.abs(W1 - W0)))
        assert moved <= 1e-15 * max(np.max(np.abs(W0)), 1.0), \
            f"{type(algo).__name__}{algo.options}: a round with learning rate 0 moved layer {l} by {moved:.3g}"


def check_flexlora_noop_is_retruncation(algo, family=least_squares):
    problem, config, state = trained_state(algo, family)
    old = state.extra["delta_W"]
    new, plans, _ = noop_round(algo, problem, config, state, 2)
    sizes = np.array([problem.client_sizes[p.client] for p in plans], dtype=float)
    w = sizes / sizes.sum() if algo.options["weighting"] == "data_size" else np.full(len(plans), 1 / len(plans))
    for l, dW in enumerate(old):
        U, sigma, Vt = np.linalg.svd(dW, full_matrices=False)
        want = sum(wi * (U[:, :k] * sigma[:k]) @ Vt[:k] for wi, k in zip(w, (config.budgets[p.client] for p in plans)))
        assert rel(want, dW) > 1e-6, "the re-truncation is not a no-op here (the check has something to test)"
        err = rel(new.extra["delta_W"][l], want)
        assert err <= 1e-12, (f"{type(algo).__name__}{algo.options}: a learning-rate-0 round should give the "
                              f"weighted average of the rank-k_i truncations; layer {l} differs by {err:.3g}")
        W = algo.global_weights(new, problem, config)[l]
        assert rel(W, problem.base_weights[l] + want) <= 1e-12


@pytest.mark.parametrize("family", [least_squares, two_layer])
@pytest.mark.parametrize("algo", [FSLoRA(), FedIT(), FedIT(weighting="data_size"), HetLoRA(),
                                  HetLoRA(scaling="constant"), FLoRA(), FLoRA(weighting="data_size", scaling="constant")],
                         ids=repr)
def test_noop_round_is_a_fixed_point(algo, family):
    check_noop_is_fixed_point(algo, family)


@pytest.mark.parametrize("server", [{"server_optimizer": "sgd", "server_lr": 0.5}])
@pytest.mark.parametrize("algo", [FSLoRA(), FedIT(), HetLoRA()], ids=repr)
def test_noop_round_is_a_fixed_point_with_server_sgd(algo, server):
    check_noop_is_fixed_point(algo, **server)


@pytest.mark.parametrize("family", [least_squares, two_layer])
@pytest.mark.parametrize("algo", [FlexLoRA(), FlexLoRA(weighting="data_size", split="balanced", scaling="constant")],
                         ids=repr)
def test_flexlora_noop_round_is_the_retruncation(algo, family):
    check_flexlora_noop_is_retruncation(algo, family)


@pytest.mark.parametrize("mutant", [mutants.FSLoRAAveragesBlocks(), mutants.FedITKeepsFirstClient(),
                                    mutants.HetLoRAAveragesMatrices(), HetLoRA(aggregate="matrix"),
                                    mutants.FLoRAForgetsReinit()], ids=lambda m: type(m).__name__)
def test_noop_mutants_break_the_fixed_point(mutant):
    with pytest.raises(AssertionError, match="learning rate 0 moved"):
        check_noop_is_fixed_point(mutant)


def test_flexlora_noop_mutant_breaks_the_retruncation():
    with pytest.raises(AssertionError, match="weighted average of the rank-k_i truncations"):
        check_flexlora_noop_is_retruncation(mutants.FlexLoRAWeightsBySize())


# -- 2. equal budgets: FedAvg where the source says so ---------------------------------------------
FULL = (6, 6, 6, 6)


def one_full_round(algo):
    problem, config, state = trained_state(algo, budgets=FULL, rounds=1)
    new, plans, uploads = run_round(algo, state, problem, config, 1)
    return problem, config, state, new, plans, uploads


def check_equals_fedit(algo):
    problem, config, _ = trained_state(algo, budgets=FULL, rounds=0)
    a, f = algo.init(problem, config), FedIT().init(problem, config)
    for t in range(3):
        a, _, _ = run_round(algo, a, problem, config, t)
        f, _, _ = run_round(FedIT(), f, problem, config, t)
    err = max(rel(x, y) for pa, pf in zip(a.layers, f.layers) for x, y in zip(pa, pf))
    assert err <= 1e-12, f"{type(algo).__name__}{algo.options} at k_i = r differs from FedIT by {err:.3g}"


def check_fedit_is_mean_of_factors(algo):
    _, _, _, new, _, uploads = one_full_round(algo)
    for l, (B, A) in enumerate(new.layers):
        err = max(rel(B, np.mean([u.trained[l][0] for u in uploads], axis=0)),
                  rel(A, np.mean([u.trained[l][1] for u in uploads], axis=0)))
        assert err <= 1e-12, f"{type(algo).__name__}: the server factors are not the clients' mean ({err:.3g})"


def check_dense_update_is_fedavg(algo, factor=1.0):
    """The global model's change this round = factor * mean_i c_i B_i A_i (minus what the client started from)."""
    problem, config, state, new, plans, uploads = one_full_round(algo)
    before, after = algo.global_weights(state, problem, config), algo.global_weights(new, problem, config)
    for l in range(len(before)):
        if isinstance(algo, FlexLoRA):   # the clients' products replace the model's update
            want = problem.base_weights[l] + factor * np.mean([dense_update(*u.trained[l], p.factors[l].coeff)
                                                               for p, u in zip(plans, uploads)], axis=0)
        else:                            # FLoRA: fresh pairs, their products are added
            want = before[l] + factor * np.mean([dense_update(*u.trained[l], p.factors[l].coeff)
                                                 for p, u in zip(plans, uploads)], axis=0)
        err = rel(after[l] - before[l], want - before[l])
        assert err <= 1e-12, (f"{type(algo).__name__}{algo.options} at k_i = r: the model's change is not "
                              f"{factor:.4g} x the clients' mean update (error {err:.3g})")


@pytest.mark.parametrize("algo", [FSLoRA(), HetLoRA(), HetLoRA(aggregate="matrix")], ids=repr)
def test_full_budget_equals_fedit(algo):
    check_equals_fedit(algo)


def test_fedit_is_the_mean_of_client_factors():
    check_fedit_is_mean_of_factors(FedIT())


@pytest.mark.parametrize("algo,factor", [(FlexLoRA(), 1.0), (FLoRA(scaling="constant"), 1.0),
                                         (FLoRA(), 1 / np.sqrt(len(FULL)))], ids=["flexlora", "flora-constant",
                                                                                  "flora-rslora"])
def test_full_budget_dense_update_is_fedavg(algo, factor):
    check_dense_update_is_fedavg(algo, factor)


def test_full_budget_mutants_fail():
    with pytest.raises(AssertionError, match="differs from FedIT"):
        check_equals_fedit(mutants.HetLoRASumsChanges())
    with pytest.raises(AssertionError, match="not the clients' mean"):
        check_fedit_is_mean_of_factors(mutants.FedITKeepsFirstClient())
    with pytest.raises(AssertionError, match="mean update"):
        check_dense_update_is_fedavg(mutants.FlexLoRAWeightsBySize())
    with pytest.raises(AssertionError, match="mean update"):
        check_dense_update_is_fedavg(mutants.FLoRASumsStack(scaling="constant"))


def test_defaults_are_the_paper_rules():
    """What `fslora simulate` runs by default (docs/spec.md §5)."""
    assert get_algorithm("hetlora").options == {"aggregate": "delta", "scaling": "rslora"}
    assert get_algorithm("flexlora").options == {"weighting": "uniform", "split": "on_B", "scaling": "rslora"}
    assert get_algorithm("flora").options == {"weighting": "uniform", "scaling": "rslora"}
    assert get_algorithm("fedit").options == {"weighting": "uniform"}
