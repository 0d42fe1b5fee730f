"""The toolkit's own H = 1 bound (not the paper's): the bound, its runs and measurements, the
step-by-step checks, client drift for H > 1, its claims (``ours.*`` in ``theory.claims``) and its
section of the verify report. Built on ``theory.exact`` and the harness's base (result, experiment,
implementations)."""
