"""Held-out splits of the problem families: separate stream, training data untouched."""
from __future__ import annotations

import numpy as np
import pytest

from fslora_ref.problems import make_problem

DIMS = {"least_squares": dict(m=12, n=6), "logistic": dict(m=12, n_classes=4), "two_layer": dict(m=6, hidden=8, n=3)}


def _data(problem):
    return [(c.X, np.asarray(c.targets)) for c in problem.clients]


@pytest.mark.parametrize("family", sorted(DIMS))
def test_training_data_bit_identical_with_and_without_held_out(family):
    plain = make_problem(family, n_clients=5, seed=7, **DIMS[family])
    split = make_problem(family, n_clients=5, seed=7, eval_size=30, **DIMS[family])
    assert plain.held_out is None
    for (X0, y0), (X1, y1) in zip(_data(plain), _data(split)):
        assert X0.tobytes() == X1.tobytes() and y0.tobytes() == y1.tobytes()
    for W0, W1 in zip(plain.base_weights, split.base_weights):
        assert W0.tobytes() == W1.tobytes()
    held = split.held_out
    assert held.client_sizes == [30] * 5 and held.link == split.link and held.base_weights is split.base_weights
    again = make_problem(family, n_clients=5, seed=7, eval_size=30, **DIMS[family]).held_out
    assert all(a.X.tobytes() == b.X.tobytes() for a, b in zip(held.clients, again.clients))
    # fresh samples, not a copy of the training rows
    assert not any(np.isin(h.X[:, 0], c.X[:, 0]).any() for h, c in zip(held.clients, split.clients))


def _cross_moment(data):
    """E[x y^T] estimated from a client's samples (labels one-hot): W_i-like, so it tells clients apart."""
    y = np.asarray(data.targets)
    if y.ndim == 1:
        y = np.eye(y.max() + 1)[y]
    return data.X.T @ y / data.size


@pytest.mark.parametrize("family", sorted(DIMS))
def test_held_out_comes_from_each_clients_own_distribution(family):
    """Client i's held-out set is drawn from D_i: (a) at the base model its held-out loss agrees
    with its training loss within 5 standard errors (4000 samples each); (b) its cross-moment
    E[x y^T] is closer to client i's training estimate than to any other client's."""
    p = make_problem(family, n_clients=3, seed=2, mean_size=4000, size_spread=0.0, heterogeneity=2.0,
                     eval_size=4000, **DIMS[family])
    W = p.base_weights
    for i in range(3):
        train, held = p.loss(i, W), p.held_out.loss(i, W)
        per_sample = [p.held_out.loss(i, W, batch=np.array([j])) for j in range(0, 4000, 10)]
        se = np.std(per_sample) * np.sqrt(2.0 / 4000)
        assert abs(train - held) < 5 * se, (family, i, train, held, se)
        gaps = [np.linalg.norm(_cross_moment(p.held_out.clients[i]) - _cross_moment(c)) for c in p.clients]
        assert int(np.argmin(gaps)) == i, (family, i, gaps)


def test_eval_size_is_validated():
    with pytest.raises(ValueError, match=r"eval_size must be an integer in \[0, \d+\], got -1"):
        make_problem("least_squares", eval_size=-1)
