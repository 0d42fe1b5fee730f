"""The a-priori general-H bound (theory.ours.general_h): holds on the reference across heterogeneity, within
10x of the measured LHS, and a bound that is too optimistic is violated."""
from dataclasses import replace

from theory.ours import general_h as g
from theory.profiles import GENERAL_H

BASE = replace(GENERAL_H, rounds=200)


def test_the_a_priori_general_h_bound_holds_within_10x_across_heterogeneity():
    res = g.check(BASE, (0.0, 1.0), 3)
    assert res.status == "verified", res.key
    rows = res.evidence["rows"]
    assert all(0.1 < r["ours_tightness"] < 1 for r in rows) and res.evidence["within_10x_of_the_lhs"]
    assert all(r["ours"]["drift"] > 0 and r["ours"]["kappa"] > 0 for r in rows)
    assert rows[1]["ours"]["drift"] > rows[0]["ours"]["drift"]      # more heterogeneity, more bounded drift


def test_a_bound_five_times_too_optimistic_is_violated():
    def optimistic(**kw):
        out = g.general_h_prior(**kw)
        return dict(out, rhs=out["rhs"] / 5) if out else out
    assert g.check(BASE, (0.0,), 3, bound_fn=optimistic).status == "violated"


def test_one_local_step_has_no_drift_term():
    out = g.general_h_prior(gap=1.0, gamma=0.01, H=1, T=100, L=2.0, r=4, budgets=(2, 2), sigma_s2=0.5, sigma_g2=0.0,
                            c_h=0.0, delta2=1.0)
    assert out["kappa"] == 0 and out["drift"] == 0
