"""``fslora crosscheck --algorithm fedit|hetlora|flexlora|flora TARGET``: the baseline battery behind the
crosscheck command (the parser lives in fslora_cli.crosscheck; this takes typed values)."""
from __future__ import annotations

from ...outputs import atomic_write_bytes, check_output_file
from . import check_baseline, declared_options, list_checks


def parse_variant(text: str | None) -> dict:
    """Parse a variant option.

    Parameters
    ----------
    text : str or None
        E.g. ``'aggregate=delta,scaling=rslora'``.

    Returns
    -------
    dict
        E.g. ``{'aggregate': 'delta', 'scaling': 'rslora'}``.
    """
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--variant must be KEY=VALUE,... (e.g. aggregate=delta), got {text!r}")
        out[key.strip()] = value.strip()
    return out


def list_baseline_checks(algorithm: str) -> str:
    """The baseline battery's checks for ``algorithm``, one line each (``crosscheck --list``).

    Parameters
    ----------
    algorithm : str
        A baseline: one of ``BASELINES``.

    Returns
    -------
    str
    """
    return "\n".join(f"{name:<30} {description}" for name, description in list_checks(algorithm))


def crosscheck_baseline(target: str, algorithm: str, *, variant: str | None = None, xfail=(),
                        json_path: str | None = None) -> int:
    """Run the baseline battery on the implementation ``target`` names, print the table, return the exit code.

    Parameters
    ----------
    target : str
        ``MODULE:ATTR`` (see :func:`fslora_ref.conformance.targets.load_target`).
    algorithm : str
        fedit, hetlora, flexlora or flora: the baseline the target implements.
    variant : str or None
        ``KEY=VALUE,...`` overriding the implementation's declared ``options`` (default: the FSLoRA
        paper's rules, docs/spec.md section 5).
    xfail : iterable of str
        ``CHECK=REASON``: checks declared to fail.
    json_path : str or None
        Also write the results there (atomically).

    Returns
    -------
    int
        0 conforms, 1 a check failed, 3 inconclusive; bad input raises ValueError (exit 2).
    """
    from ..crosscheck import parse_xfail
    from ..targets import load_target
    if json_path is not None:
        check_output_file(json_path, "--json")
    parsed_variant = parse_variant(variant)
    expected = parse_xfail(xfail)
    impl = load_target(target)
    declared_options(impl, algorithm, parsed_variant)       # a bad option is a usage error, before any check
    table = check_baseline(impl, algorithm, parsed_variant, expected)
    table.implementation = f"{table.implementation} ({target})"
    print(table.format())
    if json_path:
        atomic_write_bytes(json_path, table.dumps().encode())
    return table.exit_code
