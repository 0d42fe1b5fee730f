"""Run the checks on an implementation: ``check_implementation`` and ``parametrize_with_checks``."""
from __future__ import annotations

import json
from dataclasses import dataclass

from . import black_box, sampler, white_box  # noqa: F401  (registers the checks)
from .registry import CHECKS
from .session import MODES, CheckFailed, Options, Session, describe, require

MODE_CHOICES = ("all", "white", "black", "sampler")


@dataclass
class CheckResult:
    check: str
    mode: str
    passed: bool
    expected_failure: str | None   # the reason given in expected_failed, or None
    diagnosis: str

    @property
    def status(self) -> str:
        if self.expected_failure is not None:
            return "XPASS" if self.passed else "XFAIL"
        return "PASS" if self.passed else "FAIL"

    @property
    def ok(self) -> bool:
        """A failure counts only if the check was not declared expected to fail."""
        return self.passed or self.expected_failure is not None


class ResultTable(list):
    """The battery's result: a list of CheckResult with a printable table and JSON export."""

    implementation: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self)

    def failed(self) -> list:
        """Names of the checks that failed (expected or not)."""
        return [r.check for r in self if not r.passed]

    def __getitem__(self, key):
        if isinstance(key, str):
            for r in self:
                if r.check == key:
                    return r
            raise KeyError(key)
        return super().__getitem__(key)

    def to_json(self) -> list:
        return [{"check": r.check, "passed": r.passed, "expected_failure": r.expected_failure,
                 "diagnosis": r.diagnosis, "mode": r.mode, "status": r.status} for r in self]

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def format(self, width: int = 100) -> str:
        name_w = max([len("check")] + [len(r.check) for r in self])
        lines = [f"crosscheck: {self.implementation}", f"{'check':<{name_w}}  {'mode':<7}  {'result':<6}  diagnosis"]
        for r in self:
            text = r.diagnosis if r.expected_failure is None else f"{r.diagnosis} [expected to fail: {r.expected_failure}]"
            lines.append(f"{r.check:<{name_w}}  {r.mode:<7}  {r.status:<6}  {text}")
        bad = [r.check for r in self if not r.ok]
        lines.append(f"{sum(r.passed for r in self)}/{len(self)} checks passed; "
                     + ("conforms" if not bad else f"NOT conforming: {', '.join(bad)}"))
        return "\n".join(lines)


def supported_modes(impl) -> list:
    return [m for m, method in MODES.items() if callable(getattr(impl, method, None))]


def select_checks(impl, mode="all") -> list:
    """The registered checks for ``mode`` ('all' = every mode ``impl`` supports, or a list of modes)."""
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


def run_check(check, session: Session) -> tuple:
    """(passed, diagnosis). An exception from the implementation is a failure naming it."""
    try:
        return True, check.func(session.impl, session)
    except CheckFailed as exc:
        return False, str(exc)
    except Exception as exc:  # the implementation crashed: report it as this check's failure
        return False, f"implementation raised {type(exc).__name__}: {exc}"


def check_implementation(impl, mode="all", expected_failed=None, options: Options | None = None) -> ResultTable:
    """Run the conformance battery on ``impl``.

    mode: 'all' (every mode impl supports), 'white', 'black', 'sampler', or a list of them.
    expected_failed: {check name: reason}; such checks are run and reported but do not make
    ``table.ok`` false. An implementation may declare its own as ``impl.expected_failed`` (the
    argument's entries take precedence). Returns a ResultTable (``.ok``, ``.format()``, ``.to_json()``).
    """
    expected_failed = {**dict(getattr(impl, "expected_failed", None) or {}), **dict(expected_failed or {})}
    unknown = sorted(set(expected_failed) - set(CHECKS))
    if unknown:
        raise ValueError(f"expected_failed names unknown checks {unknown}; checks are {list(CHECKS)}")
    for name, reason in expected_failed.items():
        if not isinstance(reason, str) or not reason.strip():
            raise TypeError(f"expected_failed[{name!r}] must be a non-empty reason string, got {reason!r}")
    if options is not None and not isinstance(options, Options):
        raise TypeError(f"options must be a fslora_ref.conformance.Options, got {type(options).__name__}")
    session = Session(impl, options or Options())
    table = ResultTable()
    table.implementation = describe(impl)
    for check in select_checks(impl, mode):
        passed, diagnosis = run_check(check, session)
        table.append(CheckResult(check.name, check.mode, passed, expected_failed.get(check.name), diagnosis))
    return table


def parametrize_with_checks(implementations, mode="all", expected_failed=None, options: Options | None = None):
    """A pytest.mark.parametrize over (implementation, check) pairs, as sklearn's
    parametrize_with_checks::

        @parametrize_with_checks([MyFSLoRA()])
        def test_conformance(impl, check):
            check(impl)

    ``check(impl)`` raises AssertionError with the diagnosis on failure. Checks named in
    expected_failed are marked xfail (strict) with the given reason. Sessions are shared per
    implementation, so the black-box rounds run once.
    """
    import pytest

    if not isinstance(implementations, (list, tuple)):
        implementations = [implementations]
    expected_failed = dict(expected_failed or {})
    params = []
    for impl in implementations:
        session = Session(impl, options or Options())
        xfail = {**dict(getattr(impl, "expected_failed", None) or {}), **expected_failed}
        for c in select_checks(impl, mode):
            def bound(impl_, _c=c, _s=session):
                if impl_ is not _s.impl:
                    raise TypeError("call the parametrized check with the implementation it was built for")
                return _c.func(impl_, _s)
            bound.__name__ = f"check_{c.name}"
            marks = [pytest.mark.xfail(reason=xfail[c.name], strict=True)] if c.name in xfail else []
            params.append(pytest.param(impl, bound, id=f"{describe(impl)}-{c.name}", marks=marks))
    return pytest.mark.parametrize("impl, check", params)


__all__ = ["CheckResult", "ResultTable", "check_implementation", "parametrize_with_checks", "select_checks",
           "MODE_CHOICES"]
