"""``fslora crosscheck MODULE:ATTR``: run the conformance battery on an implementation.

MODULE is a dotted module importable from the current directory (``tests.mutants.no_sketch``)
or a path to a .py file (``examples/torch_fslora.py``); ATTR names the implementation object,
or a class / zero-argument factory that builds it. Exit code 0 iff every check not listed
with --xfail passes, 1 otherwise, 2 on a usage error.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys

from ..federation import atomic_write_bytes
from ..outputs import check_output_file
from .battery import MODE_CHOICES, check_implementation
from .registry import CHECKS
from .session import MODES, Options


def configure_parser(parser):
    parser.add_argument("target", metavar="MODULE:ATTR",
                        help="the implementation, e.g. fslora_ref.conformance.reference:impl or path/to/file.py:impl")
    parser.add_argument("--mode", choices=MODE_CHOICES, default="all",
                        help="which checks: white-box, black-box, sampler, or all the implementation supports")
    parser.add_argument("--json", metavar="PATH", help="also write the results as a JSON list (written atomically)")
    parser.add_argument("--xfail", metavar="CHECK=REASON", action="append", default=[],
                        help="declare a check expected to fail (repeatable); it no longer affects the exit code")
    parser.add_argument("--rounds", type=int, default=Options.rounds, help="black-box rounds (default %(default)s)")
    parser.add_argument("--alpha", type=float, default=Options.alpha,
                        help="family-wise false-alarm rate of each statistical check (default %(default)s)")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")


def load_target(target: str):
    """The object named by MODULE:ATTR (instantiated if it is a class or a factory)."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target must look like MODULE:ATTR (e.g. fslora_ref.conformance.reference:impl), got {target!r}")
    if module_name.endswith(".py") or os.sep in module_name:
        if not os.path.isfile(module_name):
            raise FileNotFoundError(f"target file {module_name!r} does not exist")
        spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(module_name))[0], module_name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:  # the console script's sys.path lacks the working directory
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            raise ValueError(f"cannot import module {module_name!r} from {os.getcwd()}: {exc}") from None
    if not hasattr(module, attr):
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
    obj = getattr(module, attr)
    if isinstance(obj, type) or (callable(obj) and not any(callable(getattr(obj, m, None)) for m in MODES.values())):
        obj = obj()
    return obj


def parse_xfail(items) -> dict:
    out = {}
    for item in items:
        name, sep, reason = item.partition("=")
        if not sep or not reason.strip():
            raise ValueError(f"--xfail must be CHECK=REASON, got {item!r}")
        out[name.strip()] = reason.strip()
    return out


def run(args) -> int:
    if args.list:
        for c in CHECKS.values():
            print(f"{c.name:<30} {c.mode:<8} {c.description}")
        return 0
    if args.json is not None:
        check_output_file(args.json, "--json")
    impl = load_target(args.target)
    table = check_implementation(impl, mode=args.mode, expected_failed=parse_xfail(args.xfail),
                                 options=Options(rounds=args.rounds, alpha=args.alpha))
    table.implementation = f"{table.implementation} ({args.target})"
    print(table.format())
    if args.json:
        atomic_write_bytes(args.json, table.dumps().encode())
    return 0 if table.ok else 1
