"""``fslora bench [--bridge]``: client-side cost of FSLoRA's forms and budgets, measured side by side.

Without ``--bridge``: the NumPy reference (:func:`fslora_ref.bench.run_bench`): round time of
the submatrix vs the masked form, and of budget k vs k = r. With ``--bridge``: one client on a
real LM (:func:`llm_bridge.bench.run_bridge_bench`; needs torch): trainable-state memory, step
time and peak RSS of the rank-k copy vs the masked full rank. One parser; the options of one
side given with the other are refused by name. ``--dim`` (m = n) is a deprecated spelling of
``--m`` and ``--n`` (the names ``simulate`` uses).
"""
from __future__ import annotations

from fslora_ref.validation import MAX_CLIENTS, MAX_DIM, MAX_LOCAL_STEPS, MAX_RANK

from .parser import add_deprecated_alias, integer_in

NUMPY = {"clients": 20, "m": 512, "n": 512, "local_steps": 10, "batch_size": 32, "repeats": 5}   # k: 8
BRIDGE = {"tiny": False, "steps": 3, "threads": 1, "batch_size": 8, "repeats": 7}   # k: r/8


def configure_parser(p):
    p.add_argument("--bridge", action="store_true", help="benchmark the LLM bridge client instead (needs torch)")
    p.add_argument("--rank", type=integer_in(1, f"{MAX_RANK} (--bridge: 1024)"), default=64,
                   help="global rank r (default: the paper's 64)")
    p.add_argument("--k", type=integer_in(1, "--rank"), default=None, help="client budget (default 8; with --bridge r/8)")
    p.add_argument("--batch-size", type=integer_in(1, "1048576 (--bridge: 65536)"), default=None,
                   help="minibatch size (default 32; with --bridge 8)")
    p.add_argument("--repeats", type=integer_in(1, 10_000), default=None,
                   help="timed rounds (with --bridge: client updates) per variant, median reported (default 5; "
                        "with --bridge 7)")
    p.add_argument("--json", dest="json_path", metavar="FILE", help="also write the figures to this JSON file")
    g = p.add_argument_group("NumPy reference (without --bridge)")
    g.add_argument("--clients", type=integer_in(1, MAX_CLIENTS), default=None, help=f"N (default {NUMPY['clients']})")
    m = g.add_argument("--m", type=integer_in(1, MAX_DIM), default=None,
                       help=f"input dimension of the adapted weight (default {NUMPY['m']})")
    g.add_argument("--n", type=integer_in(1, MAX_DIM), default=None,
                   help=f"output dimension of the adapted weight (default {NUMPY['n']})")
    add_deprecated_alias(g, "--dim", m, store=_square, replacement="--m and --n", metavar="D",
                         exclusive=False)
    g.add_argument("--local-steps", type=integer_in(1, MAX_LOCAL_STEPS), default=None,
                   help=f"H (default {NUMPY['local_steps']})")
    g = p.add_argument_group("LLM bridge (with --bridge)")
    g.add_argument("--tiny", action="store_true", default=None, help="use the tiny random Llama instead of SmolLM2")
    g.add_argument("--steps", type=integer_in(1, MAX_LOCAL_STEPS), default=None,
                   help=f"local steps per timed client update (default {BRIDGE['steps']})")
    g.add_argument("--threads", type=integer_in(1, "4 x cores"), default=None, help=f"torch CPU threads (default {BRIDGE['threads']})")


def _square(namespace, value) -> None:
    """``--dim D`` (deprecated): m = n = D."""
    namespace.m = namespace.n = value


def _side(args, own: dict, other: dict, flag: str, with_it: bool) -> dict:
    """The side's options (defaults filled in); an option only the other side has is an error."""
    foreign = sorted(k for k in set(other) - set(own) if getattr(args, k) is not None)
    if foreign:
        names = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise ValueError(f"{names} only appl{'ies' if len(foreign) == 1 else 'y'} "
                         f"{'without' if with_it else 'with'} {flag}")
    return {k: (default if getattr(args, k) is None else getattr(args, k)) for k, default in own.items()}


def run(args) -> int:
    if args.bridge:
        from llm_bridge.bench import BridgeBench, run_bridge_bench
        values = _side(args, BRIDGE, NUMPY, "--bridge", with_it=True)
        run_bridge_bench(BridgeBench(rank=args.rank, k=args.k, **values), json_path=args.json_path)
        return 0
    from fslora_ref.bench import run_bench
    values = _side(args, NUMPY, BRIDGE, "--bridge", with_it=False)
    run_bench(rank=args.rank, k=8 if args.k is None else args.k, json_path=args.json_path, **values)
    return 0
