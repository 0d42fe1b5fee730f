"""Run sizes of ``fslora claims`` per family, full and ``--quick``.

Full size follows ``fslora simulate``'s defaults (N = 20, H = 5, batch 16, T = 100, m = 48,
n = 32) with 100 held-out samples per client. The step size is per family, fixed once by a
stability rule that looks at no claim's outcome: half the largest step of a doubling grid at
which none of the step-sensitive arms (FSLoRA at the paper's ratios, at k/r = 1/8 with r = 16,
32, 64; FedIT; FlexLoRA) diverged over seeds 0-9 at full size. Largest stable: least squares
0.01 (0.02 diverged), logistic 0.4 (0.8 diverged), two-layer 0.005 (0.01 diverged). FSLoRA is
the first to diverge when the step grows: its clients scale their block by r/k (8 at k/r = 1/8).
No run of the full-size claims diverges at these steps.
"""
from __future__ import annotations

from .runs import Settings

FAMILY_SETUP = {
    "least_squares": {"dims": (("m", 48), ("n", 32)), "lr": 0.005},
    "logistic": {"dims": (("m", 48), ("n_classes", 16)), "lr": 0.2},
    "two_layer": {"dims": (("m", 48), ("hidden", 24), ("n", 32)), "lr": 0.0025},
}
FAMILIES = tuple(FAMILY_SETUP)

FULL = {"clients": 20, "rounds": 100, "local_steps": 5, "batch_size": 16, "eval_size": 100, "eval_every": 5}
QUICK = {"clients": 10, "rounds": 30, "local_steps": 5, "batch_size": 16, "eval_size": 100, "eval_every": 5}
SEEDS = {"full": 10, "quick": 5}


def settings_for(family: str, quick: bool, *, rounds: int | None = None, clients: int | None = None) -> Settings:
    """The Settings of ``family`` at full or quick size, optionally with T or N overridden."""
    if family not in FAMILY_SETUP:
        raise ValueError(f"--family must be one of {list(FAMILY_SETUP)}, got {family!r}")
    size = dict(QUICK if quick else FULL)
    if rounds is not None:
        size["rounds"] = rounds
    if clients is not None:
        size["clients"] = clients
    size["eval_every"] = max(1, min(size["eval_every"], size["rounds"]))
    setup = FAMILY_SETUP[family]
    return Settings(family=family, lr=setup["lr"], dims=setup["dims"], **size)
