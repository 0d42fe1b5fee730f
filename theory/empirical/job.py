"""``ClaimsJob``: the paper's empirical claims (spec section 6) on the NumPy families, as a typed
value, and :func:`run_claims`, which runs it under one or both optimiser protocols (protocols.py:
``sgd``, Algorithm 1; ``paper``, client AdamW and a server Adam step): the steps tuned on held-out
tuning seeds (tuning.py per arm under SGD, tuning_paper.py per algorithm under the paper protocol),
then each claim as paired comparisons over seeds with an effect size, simultaneous confidence
intervals and a status, the protocols side by side. Returns 1 if any (claim, family) is ``not
supported``. (``fslora claims --llm`` runs claim 1 on SmolLM2: ``llm_bridge.claims``.)

Many small dense products: multithreaded BLAS only slows them on a shared machine, so the
`fslora claims` command sets one BLAS thread before numpy loads.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import ClassVar

from fslora_ref.algorithms import ALGORITHMS
from fslora_ref.jobs import Job, check_choice
from fslora_ref.outputs import check_output_names, prepare_output_dir
from fslora_ref.progress import Progress
from fslora_ref.validation import MAX_CLIENTS, MAX_ROUNDS, check_int, check_threads

from . import claims as claims_mod
from . import engine, report, tuning, tuning_paper
from .implementation import load_implementation
from .protocols import CHOICES as PROTOCOL_CHOICES
from .protocols import PROTOCOLS, selected
from .runs import DIVERGENCE_MULTIPLE
from .settings import FAMILIES, SEEDS
from .stats import NOT_SUPPORTED
from .store import RunStore

MAX_SEEDS = 1_000
# --protocol when not given: both side by side at full size; --quick runs both too (it fits its budget:
# see docs/guides/claims.md for the measured times)
DEFAULT_PROTOCOL = {"full": "both", "quick": "both"}


@dataclass(frozen=True)
class ClaimsJob(Job):
    """``fslora claims``: which claims, on which families, over how many seeds (see ``fslora claims --help``).

    Parameters
    ----------
    quick : bool, default False
        The quick size (N = 10, T = 30, fewer seeds).
    only : str or None
        Comma-separated claim ids ("claim1" or "1"); None: all five.
    family : str or None
        One problem family (of ``theory.empirical.settings.FAMILIES``); None: all three.
    seeds : int or None
        Evaluation seeds 0..n-1 (None: by ``quick``).
    rounds : int or None
        T, overriding the size's.
    clients : int or None
        N, overriding the size's.
    margin : float, default 0.10
        The relative margin of the non-inferiority and equivalence claims, in (0, 1).
    alpha : float, default 0.05
        The false-alarm rate (one-sided level per direction) of each claim, in (0, 0.5): ``--false-alarm-rate``.
    jobs : int, default min(2, CPUs)
        Worker processes.
    impl : str or None
        ``MODULE:ATTR`` of the FSLoRA implementation the FSLoRA arms run (None: the reference's).
    protocol : {"sgd", "paper", "both"} or None
        The optimiser protocol(s), side by side (theory.empirical.protocols); None: ``DEFAULT_PROTOCOL`` of the size.
    """

    NAME: ClassVar[str] = "claims"

    quick: bool = False                  # N=10, T=30, fewer seeds
    only: str | None = None              # comma-separated claim ids ('claim1' or '1'); None: all five
    family: str | None = None            # one problem family; None: all three
    seeds: int | None = None             # seeds 0..N-1 (None: by quick)
    rounds: int | None = None            # override T
    clients: int | None = None           # override N
    margin: float = claims_mod.DEFAULT_MARGIN
    alpha: float = 0.05
    jobs: int = min(2, os.cpu_count() or 1)
    impl: str | None = None              # MODULE:ATTR of the FSLoRA implementation (None: the reference's)
    protocol: str | None = None          # "sgd", "paper" or "both" (None: DEFAULT_PROTOCOL of the mode)

    @property
    def protocols(self) -> list:
        """The protocol names to run, in report order (``sgd`` first).

        Returns
        -------
        list of str
        """
        return selected(self.protocol or DEFAULT_PROTOCOL["quick" if self.quick else "full"])

    def validate(self) -> list:
        """Check every option (one-line errors naming it).

        Returns
        -------
        list of int
            The evaluation seeds.

        Raises
        ------
        ValueError
            If an option is out of range.
        """
        if self.family is not None:
            check_choice("family", self.family, FAMILIES)
        if self.protocol is not None:
            check_choice("protocol", self.protocol, PROTOCOL_CHOICES)
        seeds = self.seeds if self.seeds is not None else SEEDS["quick" if self.quick else "full"]
        check_int("--seeds", seeds, low=2, high=MAX_SEEDS)
        check_threads("--jobs", self.jobs)   # and never more workers than units of work (engine.run_claims)
        if self.rounds is not None:
            check_int("--rounds", self.rounds, low=1, high=MAX_ROUNDS)
        if self.clients is not None:
            check_int("--clients", self.clients, low=2, high=MAX_CLIENTS)
        if not 0.0 < self.margin < 1.0:
            raise ValueError(f"--margin must be in (0, 1), got {self.margin}")
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"--false-alarm-rate must be in (0, 0.5), got {self.alpha}")
        return list(range(seeds))


class _Deferred:
    """A progress bar built at its first update (after the tuning bar has finished its line)."""

    def __init__(self, make):
        self.make, self.bar = make, None

    def update(self, n: int = 1, info: str = ""):
        if self.bar is None:
            self.bar = self.make()
        self.bar.update(n, info)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _cpu_seconds() -> float:
    """CPU time of this process and its finished worker processes (user + system), in seconds."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def select_claims(only, margin: float) -> list:
    """The claims named by ``--only``, in registry order.

    Parameters
    ----------
    only : str or None
        Comma-separated ids ("claim1" or "1"); None: every claim.
    margin : float
        The margin of the margin claims.

    Returns
    -------
    list of theory.empirical.claims.EmpiricalClaim

    Raises
    ------
    ValueError
        If ``only`` is empty or names an unknown id.
    """
    claims = claims_mod.build_claims(margin)
    if only is None:
        return claims
    tokens = [t.strip() for t in only.split(",") if t.strip()]
    if not tokens:  # an empty --only is a mistake, not "every claim"
        raise ValueError(f"--only must name at least one claim id, got {only!r}; known: {[c.id for c in claims]}")
    wanted = []
    for token in tokens:
        cid = token if token.startswith("claim") else f"claim{token}"
        if cid not in {c.id for c in claims}:
            raise ValueError(f"--only: unknown claim id {token!r}; known: {[c.id for c in claims]}")
        wanted.append(cid)
    return [c for c in claims if c.id in wanted]


def output_names(claims) -> list:
    """The files a claims run writes into its output directory.

    Checked before any run: a directory named report.json would otherwise fail only after every run
    has computed.

    Parameters
    ----------
    claims : list of theory.empirical.claims.EmpiricalClaim
        The selected claims (one figure each).

    Returns
    -------
    list of str
    """
    return ["report.json", "report.md", "runs.json"] + [f"{c.id}.png" for c in claims]


def run_claims(job: ClaimsJob, out: str, *, resume: bool = False, algorithms=None) -> int:
    """Run ``job``, print the table, write report.md / report.json / figures and runs.json into ``out``.

    Parameters
    ----------
    job : ClaimsJob
    out : str
        Output directory.
    resume : bool
        Reuse the finished runs in ``<out>/runs.json``.
    algorithms : dict or None
        Optional name -> Algorithm class (tests swap in a broken FSLoRA); ``job.impl`` (MODULE:ATTR)
        replaces the FSLoRA entry and is recorded in the report's ``meta.implementation``.

    Returns
    -------
    int
        1 if any (claim, family) is not supported, else 0.
    """
    seeds = job.validate()
    claims = select_claims(job.only, job.margin)
    families = [job.family] if job.family else list(FAMILIES)
    algorithms = dict(algorithms or ALGORITHMS)
    if job.impl is not None:
        algorithms["fslora"] = load_implementation(job.impl)
    prepare_output_dir(out)
    check_output_names(out, output_names(claims))
    store = RunStore(os.path.join(out, "runs.json"), resume=resume)
    arms = engine.needed_arms(claims)
    protocols = job.protocols
    tuning_seeds = tuning.TUNING_SEEDS["quick" if job.quick else "full"]
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    tune_progress = Progress(len(families) * sum(len(engine.tuning_units(p, arms)) for p in protocols), "tuning steps")
    progress = _Deferred(lambda: Progress(len(protocols) * len(families) * len(seeds) * len(arms), "claims"))
    cost = {}
    results = engine.run_protocols(
        claims, families, seeds, protocols, quick=job.quick, store=store, jobs=job.jobs, algorithms=algorithms,
        progress=progress, rounds=job.rounds, clients=job.clients, alpha=job.alpha, tuning_seeds=tuning_seeds,
        tuning_progress=tune_progress, cost=cost)
    progress.close()
    # claims in registry order, each family's protocols side by side
    entries = [e for c in claims for f in families for p in protocols
               for e in results[p][0] if e["claim"] == c.id and e["family"] == f]
    runs = {(f, p): results[p][1][f] for p in protocols for f in families}
    rules = {"sgd": tuning.RULE.format(multiple=DIVERGENCE_MULTIPLE, seeds=list(tuning_seeds)),
             "paper": tuning_paper.RULE.format(multiple=DIVERGENCE_MULTIPLE, seeds=list(tuning_seeds))}
    meta = {"mode": "quick" if job.quick else "full", "seeds": seeds, "families": families, "alpha": job.alpha,
            "margin": job.margin, "jobs": job.jobs, "seconds": time.perf_counter() - start,
            "cpu_seconds": _cpu_seconds() - cpu_start, "cost_seconds": cost,
            "protocols": {p: PROTOCOLS[p].description for p in protocols},
            "implementation": {"fslora": engine.algorithm_name(algorithms["fslora"]),
                               "target": job.impl, "baselines": {n: engine.algorithm_name(algorithms[n])
                                                                for n in sorted(algorithms) if n != "fslora"}},
            "step_rule": {p: rules[p] for p in protocols},
            "tuning_seeds": list(tuning_seeds), "divergence_multiple": DIVERGENCE_MULTIPLE,
            "tuned_steps": {p: {f: {a.label: results[p][3][f][a.key]["chosen"] for a in arms} for f in families}
                            for p in protocols},
            "settings": {p: {f: s.to_json() for f, s in results[p][2].items()} for p in protocols}}
    print(report.table(entries))
    print(report.steps_table(meta, claims))
    paths = report.write_all(out, entries, meta, claims, runs)
    print(f"\n{meta['seconds']:.1f} s ({meta['cpu_seconds']:.1f} s CPU, this process and its workers); wrote "
          + ", ".join(paths + [store.path]))
    bad = [e["id"] for e in entries if e["status"] == NOT_SUPPORTED]
    if bad:
        print(f"not supported: {', '.join(bad)} (details in {os.path.join(out, 'report.md')})")
        return 1
    return 0
