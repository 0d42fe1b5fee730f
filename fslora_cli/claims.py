"""``fslora claims [--quick] [--only ID,...] [--family F] [--seeds N] [--protocol sgd|paper|both] [--impl MODULE:ATTR]
[--out DIR]``: the paper's empirical claims (spec section 6) on the NumPy families, each as paired comparisons
over seeds with an effect size, simultaneous confidence intervals and a status, under plain SGD and the
paper's optimisers side by side
(:func:`theory.empirical.job.run_claims`). ``--llm`` runs claim 1 on SmolLM2 instead
(:func:`llm_bridge.claims.run_llm_claims`: tuned steps, a declared sequential plan whose seeds
accumulate with ``--resume``, an intersection-union test): one parser, dispatched on the parsed ``--llm``; an
option of one side given with the other is refused by name.

Exit code 1 if any (claim, family) is ``not supported``, 2 on bad arguments. ``--alpha`` is a
deprecated spelling of ``--false-alarm-rate`` (``--lora-alpha`` is LoRA's alpha, as in ``finetune``).
"""
from __future__ import annotations

import os

# Many small dense products: multithreaded BLAS only slows them on a shared machine. Must be set
# before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from theory.empirical.job import DEFAULT_PROTOCOL, ClaimsJob  # noqa: E402
from theory.empirical.protocols import CHOICES as PROTOCOLS  # noqa: E402
from theory.empirical.settings import FAMILIES, SEEDS  # noqa: E402
from fslora_ref.validation import MAX_CLIENTS, MAX_ROUNDS  # noqa: E402
from llm_bridge import limits  # noqa: E402

from .parser import add_deprecated_alias, integer_in  # noqa: E402

NUMPY_ONLY = ("quick", "only", "family", "margin", "jobs", "impl", "protocol")
LLM_ONLY = ("model", "algorithms", "rank", "lora_alpha", "local_steps", "lrs", "tuning_seeds", "tuning_rounds",
            "batch_size", "examples_per_client", "dirichlet_alpha", "eval_per_family", "threads", "pilot_seeds",
            "seed_step", "max_seeds", "looks")
OUT = {False: "runs/claims", True: "runs/claims-llm"}


def configure_parser(p):
    d = ClaimsJob()
    p.add_argument("--llm", action="store_true", help="run claim 1 on SmolLM2 through the LLM bridge (a long run)")
    p.add_argument("--quick", action="store_true", default=None,
                   help=f"N=10, T=30, {SEEDS['quick']} seeds, steps tuned on 2 seeds instead of N=20, T=100 (two-layer 250), "
                        f"{SEEDS['full']} seeds, steps tuned on 3: a smoke test, not a verdict")
    p.add_argument("--only", default=None, help="comma-separated claim ids, e.g. claim1,claim4 or 1,4 (default: all five)")
    p.add_argument("--family", choices=FAMILIES, default=None, help="one problem family (default: all three)")
    p.add_argument("--protocol", choices=PROTOCOLS, default=None,
                   help="optimiser protocol: sgd (client SGD, server average: Algorithm 1; each arm's step tuned), paper "
                        "(client AdamW, server Adam for FSLoRA/FedIT/HetLoRA as in the paper's code; one step per "
                        f"algorithm tuned) or both, side by side (default {DEFAULT_PROTOCOL['full']}; --quick "
                        f"{DEFAULT_PROTOCOL['quick']})")
    p.add_argument("--seeds", type=integer_in(2, limits.MAX_SEEDS), default=None,
                   help=f"seeds 0..N-1 (default {SEEDS['full']}, --quick {SEEDS['quick']}; not with --llm: its plan "
                        "decides)")
    p.add_argument("--rounds", type=integer_in(1, MAX_ROUNDS), default=None, help="override T (rounds; --llm default 4)")
    p.add_argument("--clients", type=integer_in(2, f"{MAX_CLIENTS} (--llm: [1, {limits.MAX_CLIENTS}])"), default=None,
                   help="override N (clients; --llm default 4, budgets cycle over k_i/r = 1/8, 1/4, 1/2, 3/4)")
    p.add_argument("--margin", type=float, default=None,
                   help=f"relative equivalence / non-inferiority margin of claims 4 and 5 (default {d.margin:g})")
    rate = p.add_argument("--false-alarm-rate", type=float, default=d.alpha, metavar="RATE",
                          help="one-sided level per direction (Bonferroni within a claim), in (0, 0.5)")
    add_deprecated_alias(p, "--alpha", rate)
    p.add_argument("--jobs", type=integer_in(1, "4 x cores"), default=None, help=f"worker processes (default {d.jobs})")
    p.add_argument("--impl", metavar="MODULE:ATTR", default=None,
                   help="run every FSLoRA arm with this implementation (an fslora_ref.algorithms.Algorithm: instance, "
                        "class or factory; the `fslora verify --impl` syntax); recorded in the report")
    p.add_argument("--out", default=None, help="output directory (default: runs/claims; --llm runs/claims-llm)")
    p.add_argument("--resume", action="store_true",
                   help="reuse the finished tunings and runs in <out>/runs.json (--llm: the tuning and seed records "
                        "in <out>/tuning and <out>/seeds, and continue the plan)")
    g = p.add_argument_group("LLM bridge (with --llm)")
    g.add_argument("--model", default=None, help="'smollm2' (default), 'tiny' or a local model dir")
    g.add_argument("--algorithms", default=None, help="which algorithms to run: a comma-separated subset, with fslora "
                                                      "and at least one baseline (default fslora,hetlora,flexlora,flora)")
    g.add_argument("--rank", type=integer_in(1, limits.MAX_RANK), default=None, help="global LoRA rank r (default 16)")
    g.add_argument("--lora-alpha", type=float, default=None, help="LoRA alpha (scaling s = alpha/r; default 32)")
    g.add_argument("--local-steps", type=integer_in(1, limits.MAX_LOCAL_STEPS), default=None,
                   help="local steps H (default 2)")
    g.add_argument("--lrs", default=None, help="client learning-rate grid, comma-separated, tuned per algorithm on "
                                               "the tuning seeds (default 1e-3,2e-3,4e-3,8e-3: it brackets every "
                                               "algorithm's chosen step in the recorded run)")
    g.add_argument("--tuning-rounds", type=integer_in(1, MAX_ROUNDS), default=None,
                   help="rounds of each tuning run (default 2; shorter than --rounds is cheaper)")
    g.add_argument("--tuning-seeds", default=None, help="comma-separated, each >= 1000 (default 1000)")
    g.add_argument("--batch-size", type=integer_in(1, limits.MAX_BATCH), default=None,
                   help="client minibatch size (default 4)")
    g.add_argument("--examples-per-client", type=integer_in(1, limits.MAX_EXAMPLES_PER_CLIENT), default=None,
                   help="synthetic examples per client (default 200)")
    g.add_argument("--dirichlet-alpha", type=float, default=None,
                   help="non-IID level of the family mix, smaller = more skewed (default 0.5)")
    g.add_argument("--eval-per-family", type=integer_in(1, limits.MAX_EVAL_PER_FAMILY), default=None,
                   help="held-out examples per family (default 25)")
    g.add_argument("--threads", type=integer_in(1, "4 x cores"), default=None, help="torch CPU threads (default 1)")
    g.add_argument("--pilot-seeds", type=integer_in(2, 1000), default=None, help="the plan's first look (default 3)")
    g.add_argument("--seed-step", type=integer_in(1, 1000), default=None,
                   help="seeds added before each later look (default 2)")
    g.add_argument("--max-seeds", type=integer_in(2, 1000), default=None,
                   help="the plan's last look, at least --pilot-seeds (default 9)")
    g.add_argument("--looks", type=integer_in(0, 1000), default=None,
                   help="looks of the plan this invocation may advance (default 1; 0: only the report of the records; "
                        "with --resume seeds accumulate)")


def _given(args, names) -> dict:
    """{name: value} of the options in ``names`` that were given (None: left at 'the side's default')."""
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def run(args, algorithms=None) -> int:
    """algorithms: optional name -> Algorithm class for the NumPy claims (tests swap in a broken FSLoRA)."""
    out = args.out or OUT[args.llm]
    if args.llm:
        sizes = _given(args, ("rounds", "clients"))
        if args.only not in (None, "1", "claim1") or args.family or args.quick:
            raise ValueError("--llm runs claim 1 only, at its own size: --only, --family and --quick do not apply")
        _refuse(args, ("margin", "jobs", "impl", "seeds", "protocol"), "without --llm")
        from llm_bridge.claims import LLMClaimsJob, run_llm_claims
        job = LLMClaimsJob(alpha=args.false_alarm_rate, **sizes, **_given(args, LLM_ONLY))
        return run_llm_claims(job, out, resume=args.resume)
    sizes = _given(args, ("seeds", "rounds", "clients"))
    _refuse(args, LLM_ONLY, "with --llm")
    from theory.empirical.job import run_claims
    job = ClaimsJob(alpha=args.false_alarm_rate, quick=bool(args.quick), **sizes,
                    **_given(args, ("only", "family", "margin", "jobs", "impl", "protocol")))
    return run_claims(job, out, resume=args.resume, algorithms=algorithms)


def _refuse(args, names, where: str) -> None:
    given = [n for n in names if getattr(args, n) is not None]
    if given:
        options = ", ".join("--" + n.replace("_", "-") for n in given)
        raise ValueError(f"{options} only appl{'ies' if len(given) == 1 else 'y'} {where}")
