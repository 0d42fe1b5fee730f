"""Each baseline does what docs/spec.md §5 says, through the shared protocol."""
from __future__ import annotations

import numpy as np
import pytest

from fslora_ref import ALGORITHMS, FedConfig, get_algorithm, least_squares, run, run_round, two_layer
from fslora_ref.algorithms.flexlora import truncated_factors


def setup(name, budgets=(2, 3, 5), family=least_squares, **kw):
    problem = family(n_clients=len(budgets), seed=3, batch_size=8)
    config = FedConfig(rank=6, budgets=budgets, local_steps=3, lr=0.01, rounds=3, **kw)
    algo = get_algorithm(name)
    return problem, config, algo, algo.init(problem, config)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("family", [least_squares, two_layer])
def test_protocol_runs_every_algorithm(name, family):
    problem = family(n_clients=3, seed=0, batch_size=8)
    config = FedConfig(rank=6, budgets=[2, 3, 6], local_steps=3, lr=0.01, rounds=5)
    h = run(get_algorithm(name), problem, config)
    assert len(h["loss"]) == 6 and h["loss"][-1] < h["loss"][0]
    assert h["upload_floats"][-1] > 0 and h.n_rounds == 5


def test_fedit_averages_factors_not_products():
    problem, config, algo, state = setup("fedit")
    new, plans, uploads = run_round(algo, state, problem, config, 0)
    B_avg = np.mean([u.trained[0][0] for u in uploads], axis=0)
    A_avg = np.mean([u.trained[0][1] for u in uploads], axis=0)
    assert np.allclose(new.layers[0][0], B_avg, atol=1e-14) and np.allclose(new.layers[0][1], A_avg, atol=1e-14)
    prod_avg = np.mean([u.trained[0][0] @ u.trained[0][1] for u in uploads], axis=0)
    assert np.max(np.abs(B_avg @ A_avg - prod_avg)) > 1e-8  # the aggregation is inexact
    assert all(p.factors[0].B.shape[1] == config.rank for p in plans)  # budgets ignored


def setup_variant(name, options, budgets=(2, 3, 5), **kw):
    problem = least_squares(n_clients=len(budgets), seed=3, batch_size=8)
    config = FedConfig(rank=6, budgets=budgets, local_steps=3, lr=0.01, rounds=3, **kw)
    algo = get_algorithm(name, **options)
    return problem, config, algo, algo.init(problem, config)


@pytest.mark.parametrize("aggregate", ["delta", "matrix"])
@pytest.mark.parametrize("scaling", ["rslora", "constant"])
def test_hetlora_truncates_and_zero_pads(aggregate, scaling):
    problem, config, algo, state = setup_variant("hetlora", dict(aggregate=aggregate, scaling=scaling))
    new, plans, uploads = run_round(algo, state, problem, config, 0)
    for p in plans:
        k = config.budgets[p.client]
        assert np.array_equal(p.factors[0].B, state.layers[0][0][:, :k])   # first k_i columns, not rescaled
        want_coeff = config.lora_scaling * (np.sqrt(config.rank / k) if scaling == "rslora" else 1.0)
        assert np.allclose(p.factors[0].coeff, want_coeff, rtol=1e-15)
    pad = [np.pad(u.trained[0][0], ((0, 0), (0, config.rank - u.trained[0][0].shape[1]))) for u in uploads]
    B_new = new.layers[0][0]
    if aggregate == "matrix":   # the mean of the zero-padded matrices: column 5 (no client) -> 0
        assert np.allclose(B_new, sum(pad) / 3, atol=1e-14) and np.allclose(B_new[:, 5], 0.0)
    else:   # X + mean zero-padded change (LoRA_Zero_Padding.py delta_average): column 5 stays
        B0 = state.layers[0][0]
        start = [np.pad(B0[:, :u.trained[0][0].shape[1]], ((0, 0), (0, config.rank - u.trained[0][0].shape[1])))
                 for u in uploads]
        assert np.allclose(B_new, B0 + sum(p - s for p, s in zip(pad, start)) / 3, atol=1e-14)
        assert np.array_equal(B_new[:, 5], B0[:, 5])


@pytest.mark.parametrize("weighting", ["uniform", "data_size"])
@pytest.mark.parametrize("split", ["on_B", "balanced"])
@pytest.mark.parametrize("scaling", ["rslora", "constant"])
def test_flexlora_averages_products_and_truncates_by_svd(weighting, split, scaling):
    problem, config, algo, state = setup_variant("flexlora", dict(weighting=weighting, split=split, scaling=scaling))
    state, plans, uploads = run_round(algo, state, problem, config, 0)
    sizes = np.array(problem.client_sizes, dtype=float)
    w = sizes / sizes.sum() if weighting == "data_size" else np.full(3, 1 / 3)
    c = {k: config.lora_scaling * (np.sqrt(config.rank / k) if scaling == "rslora" else 1.0) for k in config.budgets}
    want = sum(wi * c[config.budgets[u.client]] * u.trained[0][0] @ u.trained[0][1] for wi, u in zip(w, uploads))
    assert np.allclose(state.extra["delta_W"][0], want, atol=1e-14)
    plans = algo.configure_round(state, problem, config, 1, [0, 1, 2])
    sigma = np.linalg.svd(want, compute_uv=False)
    for p in plans:
        k = config.budgets[p.client]
        B, A, coeff = p.factors[0][:3]
        assert np.allclose(coeff, c[k], rtol=1e-15)
        # Eckart-Young: the best rank-k error is the tail of the singular values
        assert np.isclose(np.linalg.norm(want - c[k] * B @ A), np.sqrt(np.sum(sigma[k:] ** 2)), rtol=1e-10)
        if split == "on_B":   # LoRA_SVD.py: singular values on B, A = V_k^T with orthonormal rows
            assert np.allclose(A @ A.T, np.eye(k), atol=1e-12)
        else:                 # balanced: B^T B = A A^T = Sigma_k / c
            assert np.allclose(B.T @ B, A @ A.T, atol=1e-12)
    B, A = truncated_factors(want, 2, 2.0)
    assert B.shape == (want.shape[0], 2) and A.shape == (2, want.shape[1])


@pytest.mark.parametrize("weighting", ["uniform", "data_size"])
@pytest.mark.parametrize("scaling", ["rslora", "constant"])
def test_flora_stacks_exactly_and_reinitialises(weighting, scaling):
    problem, config, algo, state = setup_variant("flora", dict(weighting=weighting, scaling=scaling))
    new, plans, uploads = run_round(algo, state, problem, config, 0)
    sizes = np.array(problem.client_sizes, dtype=float)
    w = sizes / sizes.sum() if weighting == "data_size" else np.full(3, 1 / 3)
    K = sum(config.budgets)
    c = config.lora_scaling * (np.sqrt(config.rank / K) if scaling == "rslora" else 1.0)   # the stack's coefficient
    want = c * sum(wi * u.trained[0][0] @ u.trained[0][1] for wi, u in zip(w, uploads))
    assert np.allclose(new.extra["merged"][0], want, atol=1e-14)
    plans2 = algo.configure_round(new, problem, config, 1, [0, 1, 2])
    assert all(np.all(p.factors[0].A == 0) for p in plans2)  # fresh modules every round
    assert all(p.download_floats == sum(config.budgets) * sum(problem.layer_shapes[0]) for p in plans2)
    W = algo.global_weights(new, problem, config)[0]
    assert np.allclose(W, problem.base_weights[0] + want)


def test_options_are_validated_and_named():
    with pytest.raises(ValueError, match="hetlora aggregate must be one of"):
        get_algorithm("hetlora", aggregate="mean")
    with pytest.raises(ValueError, match="flexlora has no option 'aggregate'"):
        get_algorithm("flexlora", aggregate="delta")
    assert get_algorithm("hetlora").options == {"aggregate": "delta", "scaling": "rslora"}
    assert get_algorithm("flexlora").options == {"weighting": "uniform", "split": "on_B", "scaling": "rslora"}
    assert get_algorithm("flora").options == {"weighting": "uniform", "scaling": "rslora"}
    assert get_algorithm("fslora").options == {}


def test_resume_refuses_another_variant(tmp_path):
    problem = least_squares(n_clients=3, seed=3, batch_size=8)
    config = FedConfig(rank=6, budgets=(2, 3, 5), local_steps=2, lr=0.01, rounds=2)
    ckpt = str(tmp_path / "ck.npz")
    run(get_algorithm("hetlora"), problem, config, checkpoint=ckpt, stop_after=1)
    with pytest.raises(ValueError, match="aggregate|algorithm_options"):
        run(get_algorithm("hetlora", aggregate="matrix"), problem, config, checkpoint=ckpt, resume=True)
    h = run(get_algorithm("hetlora"), problem, config, checkpoint=ckpt, resume=True)
    assert h.n_rounds == 2


def test_accounting_per_algorithm():
    problem, config, _, _ = setup("fslora")
    m, n = problem.layer_shapes[0]
    for name in ALGORITHMS:
        algo = get_algorithm(name)
        _, plans, uploads = run_round(algo, algo.init(problem, config), problem, config, 0)
        for p, u in zip(plans, uploads):
            k = config.rank if name == "fedit" else config.budgets[p.client]
            assert u.upload_floats == k * (m + n), name
            assert u.memory_floats == 2 * k * (m + n), name  # SGD: params + grads
            if name == "fslora":
                assert p.download_floats == k * (m + n) and p.broadcast_floats == config.rank * (m + n)


def test_adamw_memory_counts_state():
    problem, config, algo, state = setup("fslora", client_optimizer="adamw")
    m, n = problem.layer_shapes[0]
    _, plans, uploads = run_round(algo, state, problem, config, 0)
    assert [u.memory_floats for u in uploads] == [4 * k * (m + n) for k in config.budgets]


def test_client_sampling_and_server_optimizers():
    problem = least_squares(n_clients=10, seed=0, batch_size=8)
    config = FedConfig(rank=6, budgets=[3] * 10, local_steps=2, lr=0.01, rounds=4, client_fraction=0.3)
    parts = [config.participants(t) for t in range(4)]
    assert all(len(p) == 3 and len(set(p)) == 3 for p in parts) and len({tuple(p) for p in parts}) > 1
    assert parts == [config.participants(t) for t in range(4)]
    h = run(get_algorithm("fslora"), problem, config)
    assert all(sum(1 for f in row if f) == 3 for row in h.per_client_upload)
    base = run(get_algorithm("fslora"), problem, config.replace(client_fraction=1.0))
    sgd1 = run(get_algorithm("fslora"), problem, config.replace(client_fraction=1.0, server_optimizer="sgd", server_lr=1.0))
    assert base.to_json() == sgd1.to_json()  # server SGD with lr 1 is Algorithm 1
    adam = run(get_algorithm("fslora"), problem, config.replace(server_optimizer="adam", server_lr=0.01))
    assert adam["loss"][-1] < adam["loss"][0]


def test_simulate_runs_the_declared_variant_and_refuses_to_resume_another(tmp_path, capsys):
    import json

    from fslora_cli.main import main
    base = ["simulate", "--clients", "3", "--rank", "6", "--budgets", "2,3,5", "--m", "8", "--n", "5",
            "--algorithms", "hetlora,flexlora", "--out", str(tmp_path)]
    assert main(base + ["--rounds", "2", "--hetlora-aggregate", "matrix", "--flexlora-split", "balanced"]) == 0
    saved = json.loads((tmp_path / "history.json").read_text())
    assert saved["algorithm_options"]["hetlora"] == {"aggregate": "matrix", "scaling": "rslora"}
    assert saved["algorithm_options"]["flexlora"]["split"] == "balanced"
    problem = least_squares(n_clients=3, m=8, n=5, batch_size=16, seed=0)
    config = FedConfig(rank=6, budgets=(2, 3, 5), local_steps=5, lr=0.01, rounds=2, seed=0)
    want = run(get_algorithm("hetlora", aggregate="matrix"), problem, config)["loss"]
    assert saved["algorithms"]["hetlora"]["loss"] == want   # the flag reaches the algorithm
    capsys.readouterr()
    assert main(base + ["--rounds", "3", "--resume"]) == 2   # default variant: the checkpoints are another run's
    assert "algorithm_options" in capsys.readouterr().err
    assert main(base + ["--rounds", "3", "--resume", "--hetlora-aggregate", "matrix", "--flexlora-split", "balanced"]) == 0
    with pytest.raises(SystemExit) as exc:   # argparse's own choices check: exit 2
        main(base + ["--hetlora-aggregate", "mean"])
    assert exc.value.code == 2
