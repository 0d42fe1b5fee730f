"""``fslora crosscheck --algorithm fedit|hetlora|flexlora|flora TARGET``: the baseline battery behind the
crosscheck command (the parser lives with the FSLoRA battery's; this takes the parsed values)."""
from __future__ import annotations

from ...outputs import atomic_write_bytes, check_output_file
from . import check_baseline, declared_options, list_checks


def parse_variant(text: str | None) -> dict:
    """'aggregate=delta,scaling=rslora' -> {'aggregate': 'delta', 'scaling': 'rslora'}."""
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"--variant must be KEY=VALUE,... (e.g. aggregate=delta), got {text!r}")
        out[key.strip()] = value.strip()
    return out


def run_baseline(args, load_target, parse_xfail) -> int:
    """Exit code 0 conforms, 1 a check failed, 3 inconclusive; bad input raises ValueError (exit 2)."""
    if args.list:
        for name, description in list_checks(args.algorithm):
            print(f"{name:<30} {description}")
        return 0
    if args.optimizers:
        raise ValueError("--optimizers applies to --algorithm fslora only (the baseline tasks use plain SGD clients "
                         "and a plain server step)")
    if args.mode != "all":
        raise ValueError("--mode applies to --algorithm fslora only")
    if args.json is not None:
        check_output_file(args.json, "--json")
    variant = parse_variant(getattr(args, "variant", None))
    expected = parse_xfail(args.xfail)
    impl = load_target(args.target)
    declared_options(impl, args.algorithm, variant)       # a bad option is a usage error, before any check
    table = check_baseline(impl, args.algorithm, variant, expected)
    table.implementation = f"{table.implementation} ({args.target})"
    print(table.format())
    if args.json:
        atomic_write_bytes(args.json, table.dumps().encode())
    return table.exit_code
