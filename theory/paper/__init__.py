"""The paper's claims as checks, one module per thing checked (each returns a ``theory.result.Result``):
moments (Lemma 3.1), objective (Lemma 3.2), unbiased, algorithm, smoothness, theorem (4.4),
corollary (4.5), stationary. Built on ``theory.exact`` and the harness's base (result, experiment,
implementations); the registry that runs them is ``theory.claims``."""
