"""Run the checks on an implementation: ``check_implementation`` and ``parametrize_with_checks``."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from ..outputs import dumps_json
from . import black_box, inputs, sampler, white_box  # noqa: F401  (registers the checks; inputs after the others)
from .registry import CHECKS
from .runner import run_check
from .session import MODES, CheckFailed, CheckInconclusive, Options, Session, describe, require, safe_getattr

MODE_CHOICES = ("all", "white", "black", "sampler")


STATUS = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE"}
EXIT_CODES = {"conforms": 0, "fails": 1, "inconclusive": 3}


@dataclass
class CheckResult:
    """One check's result.

    Parameters
    ----------
    check : str
        The check's name.
    mode : str
        "white", "black" or "sampler".
    outcome : {"pass", "fail", "inconclusive"}
        "inconclusive": nothing to test, or the check could not judge (never a pass, and no
        ``expected_failed`` entry excuses it).
    expected_failure : str or None
        The reason given in ``expected_failed``, or None.
    diagnosis : str
        What the check found.
    seconds : float, default 0.0
        Its run time.
    traceback : str or None
        The last frames of an exception the implementation raised.
    power : dict or None
        What a statistical check can detect (None for exact checks).
    """

    check: str
    mode: str
    outcome: str
    expected_failure: str | None   # the reason given in expected_failed, or None
    diagnosis: str
    seconds: float = 0.0
    traceback: str | None = None   # the last frames of an exception the implementation raised
    power: dict | None = None      # what a statistical check can detect (None for exact checks)

    @property
    def passed(self) -> bool:
        return self.outcome == "pass"

    @property
    def status(self) -> str:
        if self.expected_failure is not None and self.outcome != "inconclusive":
            return "XPASS" if self.passed else "XFAIL"
        return STATUS[self.outcome]

    @property
    def ok(self) -> bool:
        """A failure counts only if the check was not declared expected to fail."""
        return self.passed or (self.outcome == "fail" and self.expected_failure is not None)


class ResultTable(list):
    """The battery's result: a list of CheckResult with a printable table and JSON export.

    Besides the rows it carries what they cover: ``options`` (the Options used), ``scenarios``
    ({label: description} of every round handed out), ``seconds`` (total) and ``impl_seconds``
    (inside the implementation)."""

    implementation: str = ""
    optimizers: str = ""
    options: object = None
    scenarios: dict = {}
    seconds: float = 0.0
    impl_seconds: float = 0.0
    calls: dict = {}
    not_run: dict = {}      # check -> why it could not run (a mode the implementation does not support)

    @property
    def ok(self) -> bool:
        """True iff every check passed or failed as declared: the implementation conforms."""
        return all(r.ok for r in self)

    @property
    def verdict(self) -> str:
        """'conforms', 'fails' (a check failed unexpectedly) or 'inconclusive' (none failed, but
        some check could not judge: not shown to conform)."""
        if any(r.outcome == "fail" and not r.ok for r in self):
            return "fails"
        return "conforms" if self.ok else "inconclusive"

    @property
    def exit_code(self) -> int:
        """0 conforms, 1 a check failed, 3 no failure but an inconclusive check (2 is a usage error)."""
        return EXIT_CODES[self.verdict]

    def failed(self) -> list:
        """Names of the checks that failed (expected or not); inconclusive ones are not failures.

        Returns
        -------
        list of str
        """
        return [r.check for r in self if r.outcome == "fail"]

    def inconclusive(self) -> list:
        """Names of the checks that had nothing to test or could not judge.

        Returns
        -------
        list of str
        """
        return [r.check for r in self if r.outcome == "inconclusive"]

    def __getitem__(self, key):
        if isinstance(key, str):
            for r in self:
                if r.check == key:
                    return r
            raise KeyError(key)
        return super().__getitem__(key)

    def to_json(self) -> dict:
        """The report as JSON values.

        Returns
        -------
        dict
            verdict, exit_code, implementation, version, options, seed, optimizers, scenarios,
            coverage, power, seconds, results (one entry per check).
        """
        from .. import __version__
        options = asdict(self.options) if self.options is not None else {}
        return {"verdict": self.verdict, "exit_code": self.exit_code, "implementation": self.implementation,
                "version": __version__, "options": options, "seed": options.get("seed"),
                "optimizers": self.optimizers, "scenarios": dict(self.scenarios), "coverage": self.coverage(),
                "calls": dict(self.calls), "power": {r.check: r.power for r in self if r.power},
                "not_run": dict(self.not_run),
                "seconds": round(self.seconds, 3), "impl_seconds": round(self.impl_seconds, 3),
                "results": [{"check": r.check, "passed": r.passed, "outcome": r.outcome,
                             "expected_failure": r.expected_failure, "diagnosis": r.diagnosis, "mode": r.mode,
                             "status": r.status, "seconds": round(r.seconds, 3), "traceback": r.traceback,
                             "power": r.power} for r in self]}

    @staticmethod
    def modes_excluded(mode) -> set:
        """The modes a ``mode`` argument left out on purpose (not 'not run' for lack of a method).

        Parameters
        ----------
        mode : str or list of str
            As :func:`check_implementation` takes it.

        Returns
        -------
        set of str
        """
        modes = [mode] if isinstance(mode, str) else list(mode)
        return set() if "all" in modes else set(MODES) - set(modes)

    def coverage(self) -> str:
        """One line: what a pass covers (scenarios, ranks, client counts).

        Returns
        -------
        str
        """
        if not self.scenarios:
            return "no round was handed to the implementation"
        import re
        ns = sorted({int(x) for x in re.findall(r"N=(\d+)", " ".join(self.scenarios.values()))})
        rs = sorted({int(x) for x in re.findall(r"r=(\d+)", " ".join(self.scenarios.values()))})
        budget = getattr(self.options, "budget", "default")
        return (f"{len(self.scenarios)} scenarios (budget {budget!r}, seed {getattr(self.options, 'seed', 0)}): "
                f"N in {ns}, r in {rs}; another --seed draws other scenarios")

    def dumps(self) -> str:
        """:meth:`to_json` as strict, indented JSON text.

        Returns
        -------
        str
        """
        return dumps_json(self.to_json(), indent=2) + "\n"

    def format(self, width: int = 100) -> str:
        """The printable table: one row per check, the verdict, coverage and time.

        Parameters
        ----------
        width : int, default 100
            The line width the diagnoses are wrapped to.

        Returns
        -------
        str
        """
        name_w = max([len("check")] + [len(r.check) for r in self])
        stat_w = max([len("result")] + [len(r.status) for r in self])
        lines = [f"crosscheck: {self.implementation}"]
        if self.optimizers:
            lines.append(f"optimisers: {self.optimizers}")
        lines.append(f"{'check':<{name_w}}  {'mode':<7}  {'result':<{stat_w}}  diagnosis")
        for r in self:
            text = r.diagnosis if r.expected_failure is None else f"{r.diagnosis} [expected to fail: {r.expected_failure}]"
            lines.append(f"{r.check:<{name_w}}  {r.mode:<7}  {r.status:<{stat_w}}  {text}")
            if r.traceback:
                lines += ["    " + line for line in r.traceback.splitlines()]
        bad = [r.check for r in self if r.outcome == "fail" and not r.ok]
        unsure = self.inconclusive()
        counts = f"{sum(r.passed for r in self)}/{len(self)} checks passed"
        if bad:
            verdict = f"NOT conforming: {', '.join(bad)}" + (f"; inconclusive: {', '.join(unsure)}" if unsure else "")
        elif unsure:
            verdict = (f"not shown to conform: {', '.join(unsure)} inconclusive (an inconclusive check had nothing "
                       f"to test and never counts as a pass)")
        else:
            verdict = "conforms"
        lines.append(f"{counts}; {verdict}")
        lines.append(f"coverage: {self.coverage()}")
        for why in dict.fromkeys(self.not_run.values()):
            names = [c for c, w in self.not_run.items() if w == why]
            lines.append(f"not run: {', '.join(names)} ({why})")
        lines.append(f"time: {self.seconds:.1f} s in total, {self.impl_seconds:.1f} s of it inside the implementation "
                     f"({sum(self.calls.values())} calls)")
        return "\n".join(lines)


def supported_modes(impl) -> list:
    return [m for m, method in MODES.items() if callable(safe_getattr(impl, method))]


def select_checks(impl, mode="all") -> list:
    """The registered checks for ``mode``.

    Parameters
    ----------
    impl : object
        The implementation (which modes it supports).
    mode : str or list of str, default "all"
        "all" (every mode the implementation supports), "white", "black", "sampler", or a list of them.

    Returns
    -------
    list of Check
        In mode order (white, black, sampler), registration order within a mode.
    """
    modes = [mode] if isinstance(mode, str) else list(mode)
    for m in modes:
        if m not in MODE_CHOICES:
            raise ValueError(f"mode must be one of {list(MODE_CHOICES)} (or a list of them), got {m!r}")
    if "all" in modes:
        modes = supported_modes(impl)
        if not modes:
            raise TypeError(f"{describe(impl)} implements none of {sorted(MODES.values())}; see "
                            f"fslora_ref/conformance/protocol.py for the adapter protocol")
    else:
        for m in modes:
            require(impl, m)
    order = list(MODES)  # white, black, sampler; registration order within a mode
    return sorted((c for c in CHECKS.values() if c.mode in modes), key=lambda c: order.index(c.mode))


def check_implementation(impl, mode="all", expected_failed=None, options: Options | None = None,
                         optimizers=None) -> ResultTable:
    """Run the conformance battery on ``impl``.

    Everything is validated before any check runs.

    Parameters
    ----------
    impl : object
        The implementation: ``white_box_round``, ``black_box_round`` and / or ``sample_sketch``.
    mode : str or list of str, default "all"
        "all" (every mode the implementation supports), "white", "black", "sampler", or a list of them.
    expected_failed : dict, optional
        ``{check name: reason}``; such checks are run and reported but do not make
        ``table.ok`` false. An implementation may declare its own as ``impl.expected_failed`` (the
        argument's entries take precedence).
    options : Options, optional
        The battery's options (budget, seed, ...; default ``Options()``).
    optimizers : Optimizers or dict, optional
        The client optimiser and server rule the implementation uses (default
        ``impl.optimizers``, else SGD + plain average, Algorithm 1).

    Returns
    -------
    ResultTable
        ``.ok``, ``.verdict``, ``.format()``, ``.to_json()``.
    """
    expected_failed = {**dict(safe_getattr(impl, "expected_failed") or {}), **dict(expected_failed or {})}
    unknown = sorted(set(expected_failed) - set(CHECKS))
    if unknown:
        raise ValueError(f"expected_failed names unknown checks {unknown}; checks are {list(CHECKS)}")
    for name, reason in expected_failed.items():
        if not isinstance(reason, str) or not reason.strip():
            raise TypeError(f"expected_failed[{name!r}] must be a non-empty reason string, got {reason!r}")
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"options must be a fslora_ref.conformance.Options, got {type(options).__name__}")
    session = Session(impl, options or Options(), optimizers=optimizers)
    checks = select_checks(impl, mode)
    table = ResultTable()
    table.implementation = describe(impl)
    table.optimizers = session.optimizers.describe()
    table.options = session.options
    start = time.perf_counter()
    for check in checks:
        o = run_check(check, session)
        table.append(CheckResult(check.name, check.mode, o.outcome, expected_failed.get(check.name), o.diagnosis,
                                 o.seconds, o.traceback, session.power.get(check.name)))
    table.seconds = time.perf_counter() - start
    table.impl_seconds = session.impl_seconds
    table.scenarios = dict(session.scenarios)
    table.calls = {m: n for m, n in session.calls.items() if n}
    selected = {c.name for c in checks}
    table.not_run = {c.name: f"the implementation has no {MODES[c.mode]}(...) method" for c in CHECKS.values()
                     if c.name not in selected and c.mode not in table.modes_excluded(mode)}
    return table


def list_checks() -> str:
    """The registered checks, one line each: name, mode, what it verifies (``crosscheck --list``).

    Returns
    -------
    str
    """
    return "\n".join(f"{c.name:<30} {c.mode:<8} {c.description}" for c in CHECKS.values())


def parametrize_with_checks(implementations, mode="all", expected_failed=None, options: Options | None = None,
                            optimizers=None):
    """A pytest.mark.parametrize over (implementation, check) pairs, as sklearn's
    parametrize_with_checks::

        @parametrize_with_checks([MyFSLoRA()])
        def test_conformance(impl, check):
            check(impl)

    ``check(impl)`` raises CheckFailed (an AssertionError) with the diagnosis on failure and
    CheckInconclusive (also an AssertionError: a test that had nothing to test does not pass) when
    inconclusive. Checks named in expected_failed are marked xfail (strict, raises=CheckFailed)
    with the given reason. Sessions are shared per implementation, so the black-box rounds run once.

    Parameters
    ----------
    implementations : list or tuple
        The implementations to test.
    mode : str or list of str, default "all"
        "all" (every mode the implementation supports), "white", "black", "sampler", or a list of them.
    expected_failed : dict, optional
        ``{check name: reason}``; such checks are run and reported but do not make
        ``table.ok`` false.
    options : Options, optional
        The battery's options (budget, seed, ...; default ``Options()``).
    optimizers : Optimizers or dict, optional
        The client optimiser and server rule the implementation uses (default
        ``impl.optimizers``, else SGD + plain average, Algorithm 1).

    Returns
    -------
    pytest.MarkDecorator
        ``pytest.mark.parametrize("impl, check", ...)``.
    """
    import pytest

    if not isinstance(implementations, (list, tuple)):
        implementations = [implementations]
    expected_failed = dict(expected_failed or {})
    params = []
    for impl in implementations:
        session = Session(impl, options or Options(), optimizers=optimizers)
        xfail = {**dict(safe_getattr(impl, "expected_failed") or {}), **expected_failed}
        for c in select_checks(impl, mode):
            def bound(impl_, _c=c, _s=session):
                if impl_ is not _s.impl:
                    raise TypeError("call the parametrized check with the implementation it was built for")
                o = run_check(_c, _s)
                text = o.diagnosis + (f"\n{o.traceback}" if o.traceback else "")
                if o.outcome == "fail":
                    raise CheckFailed(text)
                if o.outcome == "inconclusive":
                    raise CheckInconclusive(f"inconclusive: {text}")
                return o.diagnosis
            bound.__name__ = f"check_{c.name}"
            marks = ([pytest.mark.xfail(reason=xfail[c.name], strict=True, raises=CheckFailed)]
                     if c.name in xfail else [])
            params.append(pytest.param(impl, bound, id=f"{describe(impl)}-{c.name}", marks=marks))
    return pytest.mark.parametrize("impl, check", params)


__all__ = ["CheckResult", "ResultTable", "check_implementation", "parametrize_with_checks", "select_checks",
           "run_check", "MODE_CHOICES", "EXIT_CODES", "list_checks"]
