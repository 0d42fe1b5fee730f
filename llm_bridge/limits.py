"""The bridge's stated maxima for sizes, counts and threads, and the checks that apply them.

``fslora finetune`` / ``bench --bridge`` / ``claims --llm`` options (and the library functions
they call) are held to these bounds before anything is loaded, so that an absurd value is a
one-line error naming the option and its range, never a run that exhausts the machine
(``--threads 100000`` used to crash torch) or runs for ever:

=====================  =============================================================
rank                   [1, MAX_RANK] (LoRA rank; r (m + n) floats per adapted layer)
clients                [1, MAX_CLIENTS]
rounds                 [1, fslora_ref MAX_ROUNDS]; local steps [1, MAX_LOCAL_STEPS]
examples per client    [1, MAX_EXAMPLES_PER_CLIENT]; clients x examples <= MAX_EXAMPLES
batch size, eval       [1, MAX_BATCH]; eval per family [1, MAX_EVAL_PER_FAMILY]
threads                [1, THREADS_PER_CORE x cores] (fslora_ref.validation.max_threads)
=====================  =============================================================
"""
from __future__ import annotations

from fslora_ref.validation import MAX_LOCAL_STEPS, MAX_ROUNDS, check_int, check_threads

MAX_RANK = 1024
MAX_CLIENTS = 10_000
MAX_EXAMPLES_PER_CLIENT = 1_000_000
MAX_EXAMPLES = 10_000_000          # synthetic examples over all clients (each is a Python record)
MAX_BATCH = 65_536
MAX_EVAL_PER_FAMILY = 100_000
MAX_SEEDS = 1_000

BOUNDS = {"rank": MAX_RANK, "clients": MAX_CLIENTS, "rounds": MAX_ROUNDS, "local_steps": MAX_LOCAL_STEPS,
          "batch_size": MAX_BATCH, "steps": MAX_LOCAL_STEPS, "repeats": 10_000,
          "examples_per_client": MAX_EXAMPLES_PER_CLIENT, "eval_per_family": MAX_EVAL_PER_FAMILY,
          "eval_every": MAX_ROUNDS, "seeds": MAX_SEEDS}


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_counts(values: dict, low: dict | None = None) -> dict:
    """Check counts against the bridge's bounds before anything is loaded.

    Each ``name -> value`` must be an integer in [low (default 1), BOUNDS[name]]; ``threads`` is
    checked against the machine's cores (:func:`fslora_ref.validation.check_threads`); and when both
    ``clients`` and ``examples_per_client`` are given their product must not exceed MAX_EXAMPLES.

    Parameters
    ----------
    values : dict
        ``{name: value}`` with names among the keys of BOUNDS (``"rank"``, ``"clients"``,
        ``"examples_per_client"``, ...) or ``"threads"``.
    low : dict, optional
        ``{name: lowest allowed value}`` for the names whose minimum is not 1 (e.g. 0).

    Returns
    -------
    dict
        The same names, values as Python ints.

    Raises
    ------
    TypeError
        If a value is not an integer.
    ValueError
        One line naming the option as the command line spells it (``--examples-per-client``) and its
        range.
    KeyError
        If a name is neither in BOUNDS nor ``"threads"`` (a programming error).

    Examples
    --------
    >>> from llm_bridge.limits import check_counts
    >>> check_counts({"rank": 8, "clients": 4})
    {'rank': 8, 'clients': 4}
    >>> check_counts({"rank": 0})
    Traceback (most recent call last):
    ...
    ValueError: --rank must be an integer in [1, 1024], got 0
    """
    low = low or {}
    out = {}
    for name, value in values.items():
        if name == "threads":
            out[name] = check_threads("--threads", value)
        else:
            out[name] = check_int(_option(name), value, low=low.get(name, 1), high=BOUNDS[name])
    if "clients" in out and "examples_per_client" in out and out["clients"] * out["examples_per_client"] > MAX_EXAMPLES:
        raise ValueError(f"--clients x --examples-per-client must be at most {MAX_EXAMPLES:,}, got "
                         f"{out['clients']} x {out['examples_per_client']} = {out['clients'] * out['examples_per_client']:,}")
    return out
