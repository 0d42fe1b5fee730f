"""Run sizes of ``fslora claims`` per family, full and ``--quick``.

Full size follows ``fslora simulate``'s defaults (N = 20, H = 5, batch 16, T = 100, m = 48,
n = 32) with 100 held-out samples per client; the two-layer family runs T = 250 rounds so that every
arm trains to a plateau (the horizon check, claims.py: the last 20% of the rounds give <= 10% of the
log loss fall). At T = 100 FSLoRA's arms at their tuned SGD step gave 12% (claims 1-3 undecided); at
150 they gave 6.5-7%, but FLoRA under SGD at its tuned step (0.04), the slowest arm (every round
restarts from a fresh adapter with B = 0), still gave 12-13%, 9-10% at 200 and 7-8% at 250 (seeds
0 and 1). The price: the full run's estimated CPU time rose from about 30 to about 41 minutes; since each
unit of work shares its seed's minibatch and sketch draws, 27 measured (docs/guides/claims.md). Each arm's client step is tuned (tuning.py) on a
doubling grid around the family's ``lr`` below, on tuning seeds disjoint from the evaluation
seeds; the base values are the former shared steps (half of FSLoRA's stability limit).
"""
from __future__ import annotations

from .runs import Settings

# Every weight's smaller dimension is 32, the largest global rank of any claim (r within the
# weights' rank); the generator's target rank 12 is no arm's global rank (4, 8, 16, 32), so no
# arm matches the problem by construction. ``lr`` is the base of each arm's tuning grid (tuning.py).
TARGET_RANK = 12
FAMILY_SETUP = {
    "least_squares": {"dims": (("m", 48), ("n", 32), ("target_rank", TARGET_RANK)), "lr": 0.005},
    "logistic": {"dims": (("m", 48), ("n_classes", 32), ("target_rank", TARGET_RANK)), "lr": 0.2},
    "two_layer": {"dims": (("m", 48), ("hidden", 32), ("n", 32), ("target_rank", TARGET_RANK)), "lr": 0.01,
                  "full_rounds": 250},
}
FAMILIES = tuple(FAMILY_SETUP)

FULL = {"clients": 20, "rounds": 100, "local_steps": 5, "batch_size": 16, "eval_size": 100, "eval_every": 5}
QUICK = {"clients": 10, "rounds": 30, "local_steps": 5, "batch_size": 16, "eval_size": 100, "eval_every": 5}
SEEDS = {"full": 10, "quick": 5}


def settings_for(family: str, quick: bool, *, rounds: int | None = None, clients: int | None = None,
                 protocol: str = "sgd") -> Settings:
    """The run settings of ``family`` at full or quick size under ``protocol``, optionally with T or N overridden.

    Parameters
    ----------
    family : str
        One of ``FAMILIES``.
    quick : bool
        The quick size (QUICK instead of FULL and the family's own full T, ``full_rounds``).
    rounds : int or None, optional
        T, overriding the size's.
    clients : int or None, optional
        N, overriding the size's.
    protocol : {"sgd", "paper"}, default "sgd"
        The optimiser protocol (protocols.py).

    Returns
    -------
    theory.empirical.runs.Settings
        ``lr`` is the base of the SGD tuning grid (the paper protocol's grid is its own).

    Raises
    ------
    ValueError
        If ``family`` is unknown.
    """
    if family not in FAMILY_SETUP:
        raise ValueError(f"--family must be one of {list(FAMILY_SETUP)}, got {family!r}")
    setup = FAMILY_SETUP[family]
    size = dict(QUICK if quick else FULL)
    if not quick and "full_rounds" in setup:
        size["rounds"] = setup["full_rounds"]
    if rounds is not None:
        size["rounds"] = rounds
    if clients is not None:
        size["clients"] = clients
    size["eval_every"] = max(1, min(size["eval_every"], size["rounds"]))
    return Settings(family=family, lr=setup["lr"], dims=setup["dims"], protocol=protocol, **size)
