"""theory: the paper's claims as executable checks (imports fslora_ref).

Rooms, each importing only those below it: ``exact/`` (the mathematics), ``paper/`` (the paper's
claims as checks) and ``ours/`` (the toolkit's own bound) over the harness's base (``result``,
``experiment``, ``implementations``, ``figures``); the verify harness on top (``claims``,
``report``, ``profiles``, and ``verify``: ``run_verify``, what ``fslora verify`` calls); ``empirical/``
(``fslora claims``: ``empirical.job.run_claims``) stands on its own."""
