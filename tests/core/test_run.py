"""Run loop: history contents, exact f^S, checkpoint atomicity, budgets, sketch views."""
from __future__ import annotations

import os

import numpy as np
import pytest

from fslora_ref import (FedConfig, budgets_from_ratios, draw_budgets, get_algorithm, least_squares, logistic, run,
                        sample_sketch)
from fslora_ref import federation
from fslora_ref.problems import enumerate_sketched, sketched_loss


def test_history_rows_and_cumulative_accounting():
    problem = least_squares(n_clients=3, m=6, n=4, seed=0, batch_size=4)
    config = FedConfig(rank=4, budgets=[1, 2, 4], local_steps=2, lr=0.01, rounds=3)
    h = run(get_algorithm("fslora"), problem, config)
    for key in federation.HISTORY_KEYS:
        assert len(h[key]) == 4, key
    per_round = sum(k * (6 + 4) for k in config.budgets)
    assert h["upload_floats"] == [0, per_round, 2 * per_round, 3 * per_round]
    assert h["broadcast_floats"][-1] == 3 * 3 * 4 * 10
    assert h.peak_client_memory == [2 * k * 10 for k in config.budgets]
    assert all(v is not None and np.isfinite(v) for v in h["sketched_loss"] + h["grad_norm_factors"])
    # f^S >= f at every iterate: the sketch adds a non-negative regulariser for least squares
    assert all(fs >= f - 1e-12 for fs, f in zip(h["sketched_loss"], h["loss"]))


@pytest.mark.parametrize("make", [least_squares, logistic])
def test_sketched_loss_matches_enumeration(make, rng):
    problem = make(n_clients=2, m=5, seed=1)
    n_out = problem.layer_shapes[0][1]
    B, A = rng.standard_normal((5, 4)), rng.standard_normal((4, n_out))
    for k in (1, 2, 4):
        exact = enumerate_sketched(lambda w: problem.loss(0, w), problem.base_weights, [(B, A)], 0.7, [k])
        assert np.isclose(sketched_loss(problem, 0, [(B, A)], 0.7, [k]), exact, rtol=1e-12, atol=0)


def test_closed_form_regulariser_has_teeth(rng):
    """Dropping c_k's (r-1) (a plausible slip) is detected by the enumeration comparison."""
    from fslora_ref.problems.sketched import least_squares_regulariser
    problem = least_squares(n_clients=1, m=5, n=3, seed=2)
    B, A = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    exact = enumerate_sketched(lambda w: problem.loss(0, w), problem.base_weights, [(B, A)], 1.0, [2])
    f = problem.loss(0, [problem.base_weights[0] + B @ A])
    wrong = least_squares_regulariser(problem.clients[0].X, B, A, 1.0, 2) * (4 - 1)  # c_k without 1/(r-1)
    assert not np.isclose(f + wrong, exact, rtol=1e-6)


def test_checkpoint_is_atomic(tmp_path, monkeypatch):
    problem = least_squares(n_clients=2, seed=0)
    config = FedConfig(rank=4, budgets=[1, 2], local_steps=2, lr=0.01, rounds=3)
    ckpt = tmp_path / "ck.npz"
    run(get_algorithm("fslora"), problem, config, checkpoint=ckpt, stop_after=1)
    good = ckpt.read_bytes()

    def crash(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        run(get_algorithm("fslora"), problem, config, checkpoint=ckpt, resume=True)
    assert ckpt.read_bytes() == good  # the previous checkpoint survives intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]  # no temp file left behind
    assert federation.read_checkpoint_header(ckpt, "fslora")["next_round"] == 1


def test_resume_refuses_other_config(tmp_path):
    problem = least_squares(n_clients=2, seed=0)
    config = FedConfig(rank=4, budgets=[1, 2], local_steps=2, lr=0.01, rounds=3)
    ckpt = tmp_path / "ck.npz"
    run(get_algorithm("fslora"), problem, config, checkpoint=ckpt, stop_after=1)
    with pytest.raises(ValueError, match=r"different run; differing fields: lr \(0.01 in the checkpoint, 0.02 now\)"):
        run(get_algorithm("fslora"), problem, config.replace(lr=0.02), checkpoint=ckpt, resume=True)
    with pytest.raises(ValueError, match="is for algorithm 'fslora'"):
        run(get_algorithm("fedit"), problem, config, checkpoint=ckpt, resume=True)
    ckpt.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not an fslora checkpoint"):
        run(get_algorithm("fslora"), problem, config, checkpoint=ckpt, resume=True)


def test_budget_distributions():
    for dist in ("uniform", "normal", "heavy_tail_low"):
        ks = draw_budgets(400, 2, 16, dist, seed=1)
        assert min(ks) >= 2 and max(ks) <= 16 and all(isinstance(k, int) for k in ks)
        assert ks == draw_budgets(400, 2, 16, dist, seed=1)
    means = {d: np.mean(draw_budgets(400, 2, 16, d, seed=1)) for d in ("uniform", "normal", "heavy_tail_low")}
    assert abs(means["uniform"] - 9) < 1 and abs(means["normal"] - 9) < 0.5 and means["heavy_tail_low"] < 6
    assert budgets_from_ratios(64, [0.125, 0.25, 0.5, 0.75], 5) == [8, 16, 32, 48, 8]
    with pytest.raises(ValueError, match="r_max"):
        draw_budgets(4, 5, 3, "uniform", 0)


def test_sketch_views(rng):
    S = sample_sketch(10, 4, rng)
    assert S.k == 4 and len(set(S.indices.tolist())) == 4 and np.all(np.diff(S.indices) > 0)
    d = S.diagonal()
    assert np.count_nonzero(d) == 4 and np.allclose(d[S.indices], 2.5)
    B, A = rng.standard_normal((3, 10)), rng.standard_normal((10, 5))
    assert np.allclose(S.apply_to_B(B) @ A, B @ S.dense() @ A)
    assert np.allclose(S.sketched_product(B, A), B @ S.dense() @ A)
    assert np.allclose(S.apply_to_A(A), S.dense() @ A)
