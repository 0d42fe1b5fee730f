"""The paper's empirical claims (spec section 6) as statistical checks: ``fslora claims``.

Runs the reference's algorithms (``fslora_ref.federation.run_round``) over seeds and decides
each claim from paired comparisons with simultaneous confidence intervals (stats.py); the
claims are data (claims.py), the runs are executed once per (family, seed) (engine.py) and
reported as report.json / report.md / one PNG per claim (report.py).
"""
