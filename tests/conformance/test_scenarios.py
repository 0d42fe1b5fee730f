"""The black-box round works for any layer shapes an adapter declares (m, n >= N)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fslora_ref.conformance.black_box import check_index_set_size, check_index_sets_coincide, \
    check_update_matches_reference
from fslora_ref.conformance.reference import impl
from fslora_ref.conformance.scenarios import black_box_round
from fslora_ref.conformance.session import Options, Session

shape = st.tuples(st.integers(4, 14), st.integers(4, 14))


class Shaped:
    """The reference, declaring its own black-box layer shapes."""

    def __init__(self, shapes):
        self.layer_shapes = shapes
        self.black_box_round = impl.black_box_round


@settings(max_examples=6)
@given(st.lists(shape, min_size=1, max_size=3))
def test_reference_passes_on_any_declared_shapes(shapes):
    session = Session(Shaped(shapes), Options(rounds=20))
    for check in (check_index_sets_coincide, check_index_set_size, check_update_matches_reference):
        check(session.impl, session)


def test_too_small_layers_are_rejected():
    with pytest.raises(ValueError, match="must have m, n >= 4"):
        black_box_round(np.float64, shapes=((3, 8),))
