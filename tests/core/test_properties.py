"""Issue-2 properties of the reference, each run on the reference (must hold) and on the mutant
built to break it (must fail): masked == submatrix, k = r recovers FedIT, one sketch per layer,
untouched coordinates, upload size, average over N, determinism, resume."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fslora_ref import FedConfig, run, run_round, two_layer, least_squares, logistic
from fslora_ref.algorithms import FedIT, FSLoRA
from fslora_ref.algorithms.fslora import draw_round_sketches

from tests.mutants import core_mutants as mutants

FAMILIES = {"least_squares": least_squares, "logistic": logistic, "two_layer": two_layer}


def small_problem(family="least_squares", n_clients=4, seed=0, batch_size=8):
    return FAMILIES[family](n_clients=n_clients, seed=seed, batch_size=batch_size)


def max_rel_diff(layers_a, layers_b) -> float:
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-300))
               for pa, pb in zip(layers_a, layers_b) for x, y in zip(pa, pb))


# -- the checks ------------------------------------------------------------------------------
def check_masked_equals_submatrix(algo_cls, family="least_squares", optimizer="sgd", budgets=(1, 2, 4, 6), seed=0, rounds=3):
    problem = small_problem(family, n_clients=len(budgets), seed=seed)
    config = FedConfig(rank=8, budgets=budgets, local_steps=4, lr=0.01, rounds=rounds, seed=seed,
                       client_optimizer=optimizer, weight_decay=0.01 if optimizer == "adamw" else 0.0)
    sub = run(algo_cls(), problem, config).final_state.layers
    masked = run(algo_cls(), problem, config.replace(form="masked")).final_state.layers
    err = max_rel_diff(sub, masked)
    assert err <= 1e-12, f"submatrix and masked forms differ by {err:.3e} (relative)"


def check_full_rank_is_fedit(algo_cls, family="least_squares"):
    problem = small_problem(family)
    config = FedConfig(rank=6, budgets=[6] * 4, local_steps=3, lr=0.01, rounds=4)
    err = max_rel_diff(run(algo_cls(), problem, config).final_state.layers,
                       run(FedIT(), problem, config).final_state.layers)
    assert err <= 1e-12, f"k_i = r differs from FedIT by {err:.3e}"


def check_one_sketch_per_layer(algo_cls):
    problem = two_layer(n_clients=3, seed=1, batch_size=8)
    config = FedConfig(rank=8, budgets=[2, 3, 4], local_steps=2, lr=0.01, rounds=1, seed=3)
    algo = algo_cls()
    state = algo.init(problem, config)
    differing = 0
    for t in range(6):
        plans = algo.configure_round(state, problem, config, t, list(range(3)))
        for plan in plans:
            expected = draw_round_sketches(config, t, plan.client, problem.n_layers)
            for l, (I, S) in enumerate(zip(plan.indices, expected)):
                assert np.array_equal(I, S.indices), f"round {t} client {plan.client} layer {l}: {I} is not the (round, client, layer) stream's draw {S.indices}"
            differing += not np.array_equal(plan.indices[0], plan.indices[1])
    assert differing > 0, "every client used the same index set for both layers in 6 rounds"


def check_outside_untouched(algo_cls, family="least_squares"):
    problem = small_problem(family, n_clients=2)
    config = FedConfig(rank=8, budgets=[2, 3], local_steps=3, lr=0.01, rounds=1, seed=5)
    algo = algo_cls()
    state = algo.init(problem, config)
    state.layers = [(B, np.random.default_rng(0).standard_normal(A.shape)) for B, A in state.layers]  # make B move too
    new, plans, _ = run_round(algo, state, problem, config, 0)
    for l, ((B0, A0), (B1, A1)) in enumerate(zip(state.layers, new.layers)):
        chosen = np.zeros(config.rank, dtype=bool)
        for p in plans:
            chosen[p.indices[l]] = True
        assert np.array_equal(B0[:, ~chosen], B1[:, ~chosen]), f"layer {l}: unselected columns of B moved"
        assert np.array_equal(A0[~chosen], A1[~chosen]), f"layer {l}: unselected rows of A moved"
        assert np.all(np.any(B0[:, chosen] != B1[:, chosen], axis=0)), f"layer {l}: a selected column did not move"


def check_upload_size(algo_cls):
    problem = two_layer(n_clients=3, seed=0, batch_size=8)
    config = FedConfig(rank=8, budgets=[1, 3, 8], local_steps=2, lr=0.01, rounds=1)
    algo = algo_cls()
    _, plans, uploads = run_round(algo, algo.init(problem, config), problem, config, 0)
    for up in uploads:
        k = config.budgets[up.client]
        want = sum(k * (m + n) for m, n in problem.layer_shapes)
        assert up.upload_floats == want, f"client {up.client}: uploads {up.upload_floats} floats, k(m+n) = {want}"
        assert sum(dB.size + dA.size for dB, dA in up.deltas) == want


def check_average_over_n(algo_cls):
    problem = small_problem(n_clients=3)
    config = FedConfig(rank=8, budgets=[2, 3, 4], local_steps=2, lr=0.01, rounds=1, seed=2)
    algo = algo_cls()
    state = algo.init(problem, config)
    new, plans, uploads = run_round(algo, state, problem, config, 0)
    (B0, A0), (B1, A1) = state.layers[0], new.layers[0]
    want = B0.copy()
    for p, up in zip(plans, uploads):
        want[:, p.indices[0]] += up.deltas[0][0] / 3
    err = float(np.max(np.abs(want - B1)))
    assert err <= 1e-14, f"server B differs from X + (1/N) sum scatter(delta) by {err:.3e}"


def check_deterministic(algo_cls):
    problem = small_problem()
    config = FedConfig(rank=8, budgets=[1, 2, 4, 6], local_steps=3, lr=0.01, rounds=3, seed=11)
    h1, h2 = run(algo_cls(), problem, config), run(algo_cls(), problem, config)
    assert h1.to_json() == h2.to_json(), "same seed gave different histories"
    for (B1, A1), (B2, A2) in zip(h1.final_state.layers, h2.final_state.layers):
        assert np.array_equal(B1, B2) and np.array_equal(A1, A2), "same seed gave different final factors"


def check_resume(algo_cls, tmp_path, stop_after=2, rounds=4, server_optimizer="none"):
    problem = small_problem()
    config = FedConfig(rank=8, budgets=[1, 2, 4, 6], local_steps=2, lr=0.01, rounds=rounds, seed=4,
                       server_optimizer=server_optimizer, server_lr=0.5)
    full = run(algo_cls(), problem, config)
    ckpt = tmp_path / f"ckpt-{algo_cls.__name__}-{stop_after}.npz"
    run(algo_cls(), problem, config, checkpoint=ckpt, stop_after=stop_after)
    resumed = run(algo_cls(), problem, config, checkpoint=ckpt, resume=True)
    assert resumed.to_json() == full.to_json(), f"resumed history differs (interrupted after {stop_after})"
    for (B1, A1), (B2, A2) in zip(full.final_state.layers, resumed.final_state.layers):
        assert np.array_equal(B1, B2) and np.array_equal(A1, A2), "resumed final state differs"


# -- reference passes ------------------------------------------------------------------------
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_masked_equals_submatrix(family, optimizer):
    check_masked_equals_submatrix(FSLoRA, family, optimizer)


@given(rank=st.integers(1, 10), data=st.data(), seed=st.integers(0, 2**16))
def test_masked_equals_submatrix_property(rank, data, seed):
    budgets = tuple(data.draw(st.lists(st.integers(1, rank), min_size=1, max_size=4)))
    problem = least_squares(n_clients=len(budgets), m=6, n=5, mean_size=12, seed=seed, batch_size=4)
    config = FedConfig(rank=rank, budgets=budgets, local_steps=3, lr=0.01, rounds=2, seed=seed)
    err = max_rel_diff(run(FSLoRA(), problem, config).final_state.layers,
                       run(FSLoRA(), problem, config.replace(form="masked")).final_state.layers)
    assert err <= 1e-12


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_full_rank_is_fedit(family):
    check_full_rank_is_fedit(FSLoRA, family)


def test_one_sketch_per_layer():
    check_one_sketch_per_layer(FSLoRA)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_outside_untouched(family):
    check_outside_untouched(FSLoRA, family)


def test_upload_size():
    check_upload_size(FSLoRA)


def test_average_over_n():
    check_average_over_n(FSLoRA)


def test_deterministic():
    check_deterministic(FSLoRA)


@pytest.mark.parametrize("stop_after", [0, 1, 3])
@pytest.mark.parametrize("server_optimizer", ["none", "adam"])
def test_resume_equals_uninterrupted(tmp_path, stop_after, server_optimizer):
    check_resume(FSLoRA, tmp_path, stop_after=stop_after, server_optimizer=server_optimizer)


# -- mutants fail ------------------------------------------------------------------------------
MUTANT_CASES = [
    ("masked_equals_submatrix", mutants.SubmatrixWithoutScale, lambda cls, tmp: check_masked_equals_submatrix(cls)),
    ("full_rank_is_fedit", mutants.LeakyUnselected, lambda cls, tmp: check_full_rank_is_fedit(cls)),
    ("one_sketch_per_layer", mutants.SharedSketchAcrossLayers, lambda cls, tmp: check_one_sketch_per_layer(cls)),
    ("outside_untouched", mutants.LeakyUnselected, lambda cls, tmp: check_outside_untouched(cls)),
    ("upload_size", mutants.UploadsFullRank, lambda cls, tmp: check_upload_size(cls)),
    ("average_over_n", mutants.DividesBySelectors, lambda cls, tmp: check_average_over_n(cls)),
    ("deterministic", mutants.GlobalRandomState, lambda cls, tmp: check_deterministic(cls)),
    ("resume", mutants.GlobalRandomState, lambda cls, tmp: check_resume(cls, tmp)),
]


@pytest.mark.parametrize("name,mutant,check", MUTANT_CASES, ids=[c[0] for c in MUTANT_CASES])
def test_check_catches_its_mutant(name, mutant, check, tmp_path):
    with pytest.raises(AssertionError):
        check(mutant, tmp_path)
