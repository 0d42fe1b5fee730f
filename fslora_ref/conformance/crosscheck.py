"""Library side of ``fslora crosscheck MODULE:ATTR``: the conformance battery on an implementation.

Exit codes (:func:`crosscheck`'s return value): 0 every check ran and passed (or failed as
declared in ``expected_failed``); 1 a check failed (does not conform); 3 no check failed but one
was inconclusive (not shown to conform). A usage error, including a target that cannot be loaded
(see :mod:`fslora_ref.conformance.targets`), is a one-line ValueError / FileNotFoundError (exit 2).
"""
from __future__ import annotations

from ..outputs import atomic_write_bytes, check_output_file
from ..validation import check_time_limit
from .battery import check_implementation, list_checks
from .optimizers import parse_optimizers
from .session import Options
from .targets import load_target


def check_list() -> str:
    """One line per check: name, mode, what it detects (``crosscheck --list``; no target needed).

    Returns
    -------
    str
    """
    return list_checks()


def parse_xfail(items) -> dict:
    """Expected failures from ``CHECK=REASON`` strings (the --xfail option).

    Parameters
    ----------
    items : iterable of str
        ``CHECK=REASON`` each.

    Returns
    -------
    dict
        ``{check: reason}``.
    """
    out = {}
    for item in items:
        name, sep, reason = item.partition("=")
        if not sep or not reason.strip():
            raise ValueError(f"--xfail must be CHECK=REASON, got {item!r}")
        out[name.strip()] = reason.strip()
    return out


def crosscheck(target: str | None, *, mode: str = "all", xfail=(), optimizers: str | None = None,
               rounds: int | None = Options.rounds, alpha: float = Options.alpha, seed: int = Options.seed,
               budget: str = Options.budget, time_limit: float | None = None, json_path: str | None = None) -> int:
    """Run the battery on the implementation ``target`` names, print the table and return the exit code.

    Parameters
    ----------
    target : str
        ``MODULE:ATTR`` (see :func:`fslora_ref.conformance.targets.load_target`).
    mode : str
        white, black, sampler or all (every mode the implementation supports).
    xfail : iterable of str
        ``CHECK=REASON``: checks declared to fail (they no longer affect the exit code).
    optimizers : str or None
        ``KEY=VALUE,...`` overriding the implementation's ``optimizers`` attribute.
    rounds, alpha, seed : the statistical black-box scenario's joint rounds (None: as the budget's
        power target needs), family-wise false-alarm rate and the battery's seed (every scenario derives from it).
    budget : str
        quick, default or thorough (``scenarios.BUDGETS``): scenarios and statistical power against speed.
    time_limit : float or None
        Seconds after which one call of the implementation fails (None or 0: no limit).
    json_path : str or None
        Also write the report there as a JSON object (atomically).

    Returns
    -------
    int
        0 conforms, 1 a check failed, 3 inconclusive.
    """
    if target is None:
        raise ValueError("crosscheck needs a target MODULE:ATTR (e.g. fslora_ref.conformance.reference:impl), or --list")
    if json_path is not None:
        check_output_file(json_path, "--json")
    if time_limit is not None:   # nan, inf and < 0 refused (nan used to mean no limit); 0: no limit
        time_limit = check_time_limit("--time-limit (seconds, 0: no limit)", time_limit)
    options = Options(rounds=rounds, alpha=alpha, seed=seed, budget=budget, time_limit=time_limit)
    parsed_optimizers = parse_optimizers(optimizers) if optimizers else None
    expected_failed = parse_xfail(xfail)
    impl = load_target(target)
    table = check_implementation(impl, mode=mode, expected_failed=expected_failed, options=options,
                                 optimizers=parsed_optimizers)
    table.implementation = f"{table.implementation} ({target})"
    print(table.format())
    if json_path:
        atomic_write_bytes(json_path, table.dumps().encode())
    return table.exit_code
