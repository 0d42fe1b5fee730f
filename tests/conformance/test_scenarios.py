"""The battery chooses every shape: randomised scenarios keyed on the seed, the layouts a model can take."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fslora_ref.conformance.black_box import check_index_set_size, check_update_matches_reference
from fslora_ref.conformance.reference import impl
from fslora_ref.conformance.scenarios import (MAX_CLIENTS, black_box_round, extra_black_box_spec, llama_shapes,
                                              random_white_box_round, statistical_black_box_spec)
from fslora_ref.conformance.session import Options, Session


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_scenarios_are_keyed_on_the_seed_and_stay_in_range(seed):
    for i in range(6):
        t = random_white_box_round(np.float64, seed, i)
        again = random_white_box_round(np.float64, seed, i)
        assert t.budgets == again.budgets and all(np.array_equal(B, B2) for (B, _), (B2, _) in zip(t.layers, again.layers))
        assert 1 <= t.n_clients <= MAX_CLIENTS and 2 <= t.rank <= 32 and 1 <= t.local_steps <= 8
        assert all(1 <= k <= t.rank for k in t.budgets) and 1 <= t.n_layers <= 3
    for spec in [statistical_black_box_spec(seed)] + [extra_black_box_spec(seed, e, 10, 5) for e in (1, 2, 3)]:
        assert all(m >= 2 * spec.n_clients and n >= 2 * spec.n_clients for m, n in spec.shapes)
    assert {statistical_black_box_spec(seed).rank, extra_black_box_spec(seed, 2, 10, 5).rank} == {12, 16}


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40))
def test_llama_layout_fits_a_llama(low):
    (h, q), (h2, v) = llama_shapes(np.random.default_rng(low), low)
    assert h == h2 and min(h, q, v) >= low and q % v == 0 and v % 2 == 0 and h % (q // 2) == 0


def test_another_seed_draws_other_scenarios_and_the_reference_passes_them():
    for seed in (3, 4):
        session = Session(impl, Options(seed=seed, budget="quick", rounds=20))
        for check in (check_index_set_size, check_update_matches_reference):
            check(session.impl, session)
    assert statistical_black_box_spec(3).budgets != statistical_black_box_spec(4).budgets


def test_too_small_layers_are_rejected():
    with pytest.raises(ValueError, match="must have m, n >= 4"):
        black_box_round(np.float64, shapes=((3, 8),))
