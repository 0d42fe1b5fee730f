"""AdamW without weight decay skips the ``+ 0.0 * p`` term: the parameters and moments are bit-identical to
the general formula (signs of zeros included) for every finite parameter, and the term is kept when decay is on."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from fslora_ref.optim import AdamW


def _general(opt, grads, state, params):
    """The update as written before the shortcut: the decay term always added."""
    t = state["t"] + 1
    c1, c2 = 1.0 - opt.beta1 ** t, 1.0 - opt.beta2 ** t
    out = []
    for p, g, m, v in zip(params, grads, state["m"], state["v"]):
        m2 = opt.beta1 * m + (1.0 - opt.beta1) * g
        v2 = opt.beta2 * v + (1.0 - opt.beta2) * g * g
        out.append(p - opt.lr * ((m2 / c1) / (np.sqrt(v2 / c2) + opt.eps) + opt.weight_decay * p))
    return out


def _same_bits(a, b):
    return np.array_equal(a, b) and np.array_equal(np.signbit(a), np.signbit(b))


# every combination of signed zeros and small/large values in p, g and the first moment
VALUES = (0.0, -0.0, 1e-300, -2.5, 3.0)
P, G, M = (np.array(x) for x in zip(*itertools.product(VALUES, repeat=3)))


@pytest.mark.parametrize("decay", [0.0, 0.01])
@pytest.mark.parametrize("t", [0, 1, 7])
def test_the_update_is_bit_identical_to_the_general_formula(decay, t):
    opt = AdamW(0.05, weight_decay=decay)
    rng = np.random.default_rng(t)
    params = [P.copy(), rng.standard_normal((6, 3))]
    grads = [G.copy(), np.where(rng.random((6, 3)) < 0.3, -0.0, rng.standard_normal((6, 3)))]
    state = {"t": t, "m": [M.copy(), rng.standard_normal((6, 3))], "v": [np.abs(M) * 0.5, rng.random((6, 3))]}
    new, _ = opt.update(grads, state, params)
    for a, b in zip(new, _general(opt, grads, state, params)):
        assert _same_bits(a, b)


def test_decay_still_pulls_the_parameters_toward_zero():
    p, g = [np.array([2.0, -2.0])], [np.zeros(2)]
    without, _ = AdamW(0.1).update(g, AdamW(0.1).init(p), p)
    with_decay, _ = AdamW(0.1, weight_decay=0.5).update(g, AdamW(0.1).init(p), p)
    assert np.array_equal(without[0], p[0]) and (np.abs(with_decay[0]) < np.abs(p[0])).all()
