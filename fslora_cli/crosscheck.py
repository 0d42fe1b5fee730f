"""``fslora crosscheck MODULE:ATTR``: run the conformance battery on an implementation
(:func:`fslora_ref.conformance.crosscheck.crosscheck`).

Exit codes: 0 every check ran and passed (or failed as declared with --xfail); 1 a check failed
(does not conform); 3 no check failed but one was inconclusive (not shown to conform); 2 a usage
error, including a target that cannot be loaded (SyntaxError, missing dependency, an exception
or sys.exit at import or in its factory). ``--list`` needs no target. ``--alpha`` is a deprecated
spelling of ``--false-alarm-rate`` (``alpha`` is LoRA's alpha elsewhere).
"""
from __future__ import annotations

from fslora_ref.conformance import crosscheck as library
from fslora_ref.conformance.battery import MODE_CHOICES
from fslora_ref.conformance.scenarios import BUDGETS
from fslora_ref.conformance.session import DEFAULT_TIME_LIMIT, Options

from .parser import add_deprecated_alias, integer_in


def configure_parser(parser):
    parser.add_argument("target", metavar="MODULE:ATTR", nargs="?",
                        help="the implementation, e.g. fslora_ref.conformance.reference:impl or path/to/file.py:impl "
                             "(not needed with --list)")
    parser.add_argument("--mode", choices=MODE_CHOICES, default="all",
                        help="which checks: white-box, black-box, sampler, or all the implementation supports")
    parser.add_argument("--json", metavar="FILE", help="also write the report as a JSON object (written atomically)")
    parser.add_argument("--xfail", metavar="CHECK=REASON", action="append", default=[],
                        help="declare a check expected to fail (repeatable); it no longer affects the exit code")
    parser.add_argument("--optimizers", metavar="KEY=VALUE,...", default=None,
                        help="the optimisers the implementation uses, overriding its `optimizers` attribute, e.g. "
                             "client=adamw,weight_decay=0.01,server=adam,server_lr=0.01 (keys: client sgd|adamw, "
                             "lr, betas 0.9/0.999, eps, weight_decay, scope selected|full, server average|sgd|adam, "
                             "server_lr, server_betas, server_eps; default: the implementation's own, else plain "
                             "SGD and averaging)")
    parser.add_argument("--budget", choices=list(BUDGETS), default="default",
                        help="scenarios and statistical power against speed (default %(default)s)")
    parser.add_argument("--rounds", type=integer_in(20), default=None,
                        help="joint rounds of the statistical black-box scenario (default: as the budget's power "
                             "target needs)")
    rate = parser.add_argument("--false-alarm-rate", type=float, default=Options.alpha, metavar="RATE",
                               help="family-wise false-alarm rate of each statistical check, in (0, 0.5) "
                                    "(default %(default)s)")
    add_deprecated_alias(parser, "--alpha", rate)
    parser.add_argument("--seed", type=integer_in(0, 2**31 - 1), default=Options.seed, help="the battery's seed (default %(default)s)")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT, metavar="SECONDS",
                        help="fail a call of the implementation that runs longer than this (default %(default)g s "
                             "per call; 0: no limit)")
    parser.add_argument("--list", action="store_true", help="list the checks (of --algorithm) and exit; no target needed")
    parser.add_argument("--algorithm", choices=("fslora", "fedit", "hetlora", "flexlora", "flora"), default="fslora",
                        help="which algorithm TARGET implements; a baseline gets the baseline battery "
                             "(fslora_ref/conformance/baselines/protocol.py) (default %(default)s)")
    parser.add_argument("--variant", metavar="KEY=VALUE,...",
                        help="the baseline's declared variant, overriding its `options` attribute, e.g. "
                             "aggregate=delta (hetlora), weighting=uniform,split=on_B (flexlora); default: "
                             "the FSLoRA paper's rules")


def run(args) -> int:
    if args.algorithm != "fslora":
        return run_baseline(args)
    if args.variant:
        raise ValueError("--variant applies to a baseline (--algorithm fedit|hetlora|flexlora|flora)")
    if args.list:
        print(library.check_list())
        return 0
    return library.crosscheck(args.target, mode=args.mode, xfail=args.xfail,
                              optimizers=args.optimizers, rounds=args.rounds, alpha=args.false_alarm_rate, seed=args.seed,
                              budget=args.budget, time_limit=args.time_limit, json_path=args.json)


def run_baseline(args) -> int:
    """``--algorithm fedit|hetlora|flexlora|flora``: the baseline battery (its own checks and options)."""
    from fslora_ref.conformance.baselines import command as baseline
    if args.list:
        print(baseline.list_baseline_checks(args.algorithm))
        return 0
    if args.optimizers:
        raise ValueError("--optimizers applies to --algorithm fslora only (the baseline tasks use plain SGD clients "
                         "and a plain server step)")
    if args.mode != "all":
        raise ValueError("--mode applies to --algorithm fslora only")
    if args.target is None:
        raise ValueError("crosscheck needs a target MODULE:ATTR (e.g. examples/numpy_hetlora.py:impl), or --list")
    return baseline.crosscheck_baseline(args.target, args.algorithm, variant=args.variant, xfail=args.xfail,
                                        json_path=args.json)
