"""theory: the paper's claims as executable checks (imports fslora_ref).

Rooms, each importing only those below it: ``exact/`` (the mathematics), ``paper/`` (the paper's
claims as checks) and ``ours/`` (the toolkit's own bound) over the harness's base (``result``,
``experiment``, ``implementations``, ``figures``); the verify harness on top (``claims``,
``report``, ``profiles``); ``empirical/`` (``fslora claims``) stands on its own."""
