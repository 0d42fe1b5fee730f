"""Bounds of Proposition D.4 / Theorem 4.4 / Corollary 4.5 as functions of the constants."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from theory.exact import bounds


@st.composite
def budgets(draw):
    r = draw(st.integers(1, 64))
    return r, draw(st.lists(st.integers(1, r), min_size=1, max_size=12))


@given(budgets(), st.floats(1e-3, 1e3))
def test_l_tilde_dominates_l_bar_dominates_l(rb, L):
    r, ks = rb
    lb, lt = bounds.L_bar(L, r, ks), bounds.L_tilde(L, r, ks)
    assert L * (1 - 1e-12) <= lb <= lt * (1 + 1e-12)   # r/k >= 1 and Jensen
    assert bounds.L_bar(L, r, [r] * len(ks)) == L == bounds.L_tilde(L, r, [r] * len(ks))


@given(budgets(), st.floats(1e-2, 1e2), st.integers(1, 8), st.floats(0, 8))
def test_step_size_limit_is_the_min_of_both_conditions(rb, L, H, c_h):
    r, ks = rb
    g = bounds.step_size_limit(L, r, ks, H, c_h)
    a = 1 / (6 * H * np.sqrt((c_h + 1) * bounds.L_tilde(L, r, ks) * L))
    b = 1 / (len(ks) * H * H * L)
    assert g == min(a, b)
    assert bounds.step_size_limit(L, r, ks, H, c_h + 1) <= g


def test_theorem_rhs_terms_by_hand():
    out = bounds.theorem_rhs(gap=2.0, gamma=0.1, T=10, H=2, L=3.0, r=4, budgets=[2, 4], sigma_g2=1.0,
                             sigma_s2=0.5, sigma_h2=0.25)
    Lb, Lt = 3.0 * (2 + 1) / 2, 3.0 * (4 + 1) / 2
    assert out["optimisation"] == pytest.approx(4 * 2.0 / (0.1 * 10 * 2))
    assert out["noise"] == pytest.approx(6 * 0.1 * Lb / 2 * 1.5)
    assert out["drift"] == pytest.approx(12 * 0.1 * Lt / 2 * (1.5 + 0.75))
    assert out["rhs"] == pytest.approx(out["optimisation"] + out["noise"] + out["drift"])


def test_corollary_step():
    assert bounds.corollary_step(4, 100, 1, 4.0) == pytest.approx(0.1)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="budgets\\[1\\]"):
        bounds.L_bar(1.0, 4, [2, 5])
    with pytest.raises(ValueError, match="L must be"):
        bounds.step_size_limit(-1.0, 4, [2], 1, 0.0)
    with pytest.raises(ValueError, match="T must be"):
        bounds.corollary_step(2, 0, 1, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        bounds.L_tilde(1.0, 4, [])
