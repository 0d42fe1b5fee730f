"""Sketch moments: closed forms vs exhaustive enumeration (hypothesis over r, k, shapes, seeds),
Monte Carlo bounds, and the checkers failing on broken sketches."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from fslora_ref.sketch import sample_sketch
from theory.paper import moments as mom
from theory.exact.moments import exact_errors, monte_carlo_check, product_variance_closed_form, reference_law

from tests.mutants import theory_mutants as M


@st.composite
def case(draw):
    r = draw(st.integers(1, 7))
    k = draw(st.integers(1, r))
    p, m, n = (draw(st.integers(1, 5)) for _ in range(3))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    return r, k, rng.standard_normal((p, r)), rng.standard_normal((m, r)), rng.standard_normal((r, n))


@given(case())
def test_every_identity_holds_exactly_by_enumeration(c):
    r, k, Mx, B, A = c
    errors = exact_errors(r, k, Mx, B, A)
    scale = 1.0 + (r / k) ** 2 * (np.sum(Mx * Mx) + np.sum(B * B) * np.sum(A * A))
    for name, err in errors.items():
        assert err <= 1e-12 * scale, (name, err)


@given(case())
def test_product_variance_is_nonnegative_and_zero_at_full_rank(c):
    r, k, _, B, A = c
    assert product_variance_closed_form(B, A, k) >= -1e-12 * (1 + np.sum(B * B) * np.sum(A * A))
    assert product_variance_closed_form(B, A, r) == 0.0


def test_reference_law_is_uniform_over_all_subsets():
    diags, probs = reference_law(6, 3)
    assert diags.shape == (20, 6) and np.allclose(probs, 1 / 20)
    assert len({tuple(d) for d in diags}) == 20
    assert np.all(np.isin(diags, [0.0, 2.0])) and np.all((diags > 0).sum(axis=1) == 3)


@given(st.integers(2, 40), st.data(), st.integers(0, 1000))
def test_monte_carlo_moments_within_hoeffding_bound(r, data, seed):
    k = data.draw(st.integers(1, r))
    out = monte_carlo_check(r, k, 400, seed, delta=1e-6)
    assert out["ok"], out


@pytest.mark.parametrize("cid", sorted(mom.IDENTITIES))
def test_identity_checkers_pass_on_reference(cid):
    res = mom.check_identity(cid)
    assert res.status == "verified", res


@pytest.mark.parametrize("cid", sorted(mom.IDENTITIES))
def test_identity_checkers_fail_on_a_broken_law(cid):
    # the inequality ||MS||^2 <= (r/k)^2 ||M||^2 only breaks when S is over-scaled
    law = M.overscaled_law if cid == "identity.frobenius_max" else M.first_k_law
    assert mom.check_identity(cid, law=law).status == "violated"
    if cid != "identity.frobenius_max":
        assert mom.check_identity(cid, law=M.unscaled_law).status == "violated"


def test_large_r_check_passes_on_core_sampler_and_fails_on_mutants():
    assert mom.check_large_r(n_samples=3000, ks=(8, 48)).status == "verified"
    for sampler in (M.unscaled_sampler, M.first_k_sampler):
        res = mom.check_large_r(sampler=sampler, n_samples=3000, ks=(8,))
        assert res.status == "violated" and res.evidence["max_error_over_bound"] > 1


def test_uniformity_check_passes_on_core_sampler_and_fails_on_mutants():
    assert mom.check_uniform_subsets(sampler=sample_sketch, n_samples=4000).status == "verified"
    for sampler in (M.first_k_sampler, M.with_replacement_sampler):
        assert mom.check_uniform_subsets(sampler=sampler, n_samples=4000).status == "violated"


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="k must be"):
        reference_law(4, 5)
    with pytest.raises(ValueError, match="delta"):
        monte_carlo_check(8, 2, 100, 0, delta=2.0)
    with pytest.raises(TypeError, match="n_samples"):
        monte_carlo_check(8, 2, 10.5, 0)
