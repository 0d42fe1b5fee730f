"""Degenerate and hostile implementations: none may be called conforming, and none of their checks
may pass vacuously. Outputs that are NaN / None / constant / mis-shaped / of the wrong dtype, rounds
that change nothing or only rescale, Exception / SystemExit(0) / SystemExit(1) raised at call and at
import, a hanging call, a failing factory."""
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from fslora_cli.main import main
from fslora_ref.conformance import Options, check_implementation
from fslora_ref.conformance.targets import load_target
from fslora_ref.conformance.reference import impl as reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = Options(rounds=20, sampler_draws=500, time_limit=60)


class Sampler:
    """sample_sketch returning ``value(rank)``."""

    def __init__(self, name, value):
        self.name, self.value = name, value

    def sample_sketch(self, rank, k, seed):
        return self.value(rank)


class Rounds:
    """white_box_round and black_box_round returning ``value(task)``."""

    def __init__(self, name, value):
        self.name, self.value = name, value

    def white_box_round(self, task):
        return self.value(task)

    def black_box_round(self, task):
        return self.value(task)


class Raises:
    """Every method raises ``exc``."""

    def __init__(self, name, exc):
        self.name, self.exc, self.calls = name, exc, 0

    def _raise(self, *args):
        self.calls += 1
        raise self.exc

    white_box_round = black_box_round = sample_sketch = _raise


HOSTILE = [
    Sampler("sampler: all NaN", lambda r: np.full(r, np.nan)),
    Sampler("sampler: None", lambda r: None),
    Sampler("sampler: all None", lambda r: [None] * r),
    Sampler("sampler: constant 0.5", lambda r: np.full(r, 0.5)),
    Sampler("sampler: constant 0.25", lambda r: np.full(r, 0.25)),
    Sampler("sampler: wrong shape", lambda r: np.ones(r + 1)),
    Sampler("sampler: strings", lambda r: np.array(["1"] * r)),
    Sampler("sampler: complex", lambda r: np.ones(r) * (1 + 1j)),
    Rounds("round: NaN", lambda t: [(np.full(np.shape(B), np.nan), A) for B, A in t.layers]),
    Rounds("round: None", lambda t: None),
    Rounds("round: wrong shape", lambda t: [(B[:, :1], A) for B, A in t.layers]),
    Rounds("round: complex dtype", lambda t: [(B + 0j, A) for B, A in t.layers]),
    Rounds("round: object dtype", lambda t: [(np.array(B, dtype=object), A) for B, A in t.layers]),
    Rounds("round: no-op", lambda t: t.layers),
    Rounds("round: rescales (B, A) only", lambda t: [(1.1 * B, 1.1 * A) for B, A in t.layers]),
    Raises("raises RuntimeError", RuntimeError("boom")),
    Raises("raises SystemExit(0)", SystemExit(0)),
    Raises("raises SystemExit(1)", SystemExit(1)),
]


@pytest.mark.parametrize("impl", HOSTILE, ids=lambda i: i.name)
def test_hostile_implementation_is_never_conforming_and_passes_no_check(impl):
    table = check_implementation(impl, options=FAST)
    assert table.verdict != "conforms" and not table.ok and table.exit_code in (1, 3), table.format()
    passed = [r.check for r in table if r.passed]
    assert passed == [], f"vacuous passes {passed}:\n{table.format()}"
    assert all(r.diagnosis for r in table)


def test_the_false_passes_of_issue_10_now_fail_with_a_reason():
    nan = check_implementation(HOSTILE[0], options=FAST)["sampler_unbiased"]
    assert nan.outcome == "fail" and "non-finite" in nan.diagnosis
    half = check_implementation(HOSTILE[3], options=FAST)["sampler_unbiased"]
    assert half.outcome == "fail" and "is 0.5, expected 1" in half.diagnosis
    noop = check_implementation(HOSTILE[13], mode="white", options=FAST)["aggregation_divides_by_n"]
    rescale = check_implementation(HOSTILE[14], mode="white", options=FAST)["aggregation_divides_by_n"]
    assert noop.outcome == rescale.outcome == "inconclusive" and "nothing to average" in noop.diagnosis


def test_an_exception_is_a_failure_named_once_with_its_frames_and_never_rerun():
    impl = Raises("raises", ValueError("bad index"))
    table = check_implementation(impl, mode="white", options=FAST)
    assert table.failed() == [r.check for r in table]
    first, rest = table[0], table[1:]
    assert "implementation raised ValueError: bad index" in first.diagnosis
    assert first.traceback and "raise self.exc" in first.traceback        # the implementation's own frame
    assert all("same exception as in check round_matches_reference" in r.diagnosis and r.traceback is None
               for r in rest)
    # a failed round is cached, not re-run by every check that needs it: 7 checks, 4 distinct first rounds
    # (the joint two_layer round, client 0 alone, the constant-gradient probe, the full-rank round)
    assert impl.calls == 4


def test_system_exit_in_sample_sketch_is_a_failure_not_exit_zero(tmp_path):
    path = tmp_path / "exits.py"
    path.write_text(textwrap.dedent("""
        import sys
        class Impl:
            def sample_sketch(self, rank, k, seed):
                sys.exit(0)
        impl = Impl()
    """))
    proc = subprocess.run([sys.executable, "-m", "fslora_cli.main", "crosscheck", f"{path}:impl"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "SystemExit(0) (sys.exit was called)" in proc.stdout and "0/3 checks passed" in proc.stdout


def test_a_keyboard_interrupt_still_interrupts():
    with pytest.raises(KeyboardInterrupt):
        check_implementation(Raises("ctrl-c", KeyboardInterrupt()), mode="sampler", options=FAST)


class Hangs:
    name = "hangs"

    def __init__(self, native: bool):
        self.native, self.calls = native, 0

    def sample_sketch(self, rank, k, seed):
        self.calls += 1
        if self.native:                     # blocked in C: cannot be stopped, only abandoned
            threading.Event().wait()
        while True:                         # pure Python: stopped at the deadline
            pass


@pytest.mark.parametrize("native", [False, True], ids=["python-loop", "blocked-in-C"])
def test_a_hanging_call_fails_its_check_and_the_rest_are_not_run(native):
    impl = Hangs(native)
    table = check_implementation(impl, options=Options(time_limit=0.3))
    first = table[0]
    assert first.outcome == "fail" and "did not finish within the time limit of 0.3 s" in first.diagnosis
    assert ("was stopped" if not native else "is still running in a background thread") in first.diagnosis
    assert [r.outcome for r in table[1:]] == ["inconclusive"] * 2
    assert all("not run" in r.diagnosis for r in table[1:]) and impl.calls == 1
    assert table.verdict == "fails" and table.exit_code == 1


HOSTILE_FILES = {
    "raises_at_import": ("raise RuntimeError('no GPU found')", "raised RuntimeError: no GPU found"),
    "exit0_at_import": ("import sys\nsys.exit(0)", "raised SystemExit(0) (sys.exit was called)"),
    "exit1_at_import": ("import sys\nsys.exit(1)", "raised SystemExit(1)"),
    "syntax_error": ("def broken(:\n    pass", "SyntaxError"),
    "missing_dependency": ("import fslora_no_such_dependency", "No module named 'fslora_no_such_dependency'"),
    "failing_factory": ("def impl():\n    raise ValueError('bad config')", "calling impl() raised ValueError: bad config"),
    "exiting_factory": ("import sys\nclass impl:\n    def __init__(self):\n        sys.exit(0)",
                        "calling impl() raised SystemExit(0)"),
}


@pytest.mark.parametrize("name", HOSTILE_FILES)
def test_a_target_that_cannot_be_loaded_is_a_one_line_usage_error(name, tmp_path, capsys):
    source, phrase = HOSTILE_FILES[name]
    path = tmp_path / f"{name}.py"
    path.write_text(source + "\n")
    assert main(["crosscheck", f"{path}:impl"]) == 2
    err = capsys.readouterr().err
    assert phrase in err and err.count("\n") == 1 and "Traceback" not in err, err
    with pytest.raises(ValueError, match="importing|calling impl"):
        load_target(f"{path}:impl")


def test_sys_exit_as_a_target_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "fslora_cli.main", "crosscheck", "sys:exit"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "SystemExit" in proc.stderr and proc.stdout == ""


def test_the_battery_never_blames_the_implementation_for_its_own_errors():
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2147483647\]"):
        Options(seed=-1)
    with pytest.raises(TypeError, match="time_limit"):
        Options(time_limit="1")
    from fslora_ref.conformance.registry import Check
    from fslora_ref.conformance.runner import run_check
    from fslora_ref.conformance.session import Session

    def buggy(impl, session=None):
        return 1 / 0

    out = run_check(Check("buggy", "white", buggy, ""), Session(reference, FAST))
    assert out.outcome == "inconclusive" and "the battery itself raised ZeroDivisionError" in out.diagnosis
    assert "not in the implementation" in out.diagnosis


def test_a_result_that_explodes_when_read_is_the_implementations_failure():
    def explode():
        yield from ()
        raise SystemExit(0)

    table = check_implementation(Rounds("lazy", lambda t: explode()), mode="white", options=FAST)
    assert set(table.failed()) == {r.check for r in table}
    assert "reading the returned result raised SystemExit(0)" in table["round_matches_reference"].diagnosis


def test_malformed_uploads_fail_the_checks_that_read_them():
    from fslora_ref.conformance import RoundResult

    class BadUploads:
        name = "bad uploads"

        def white_box_round(self, task):
            return RoundResult(reference.white_box_round(task).layers, uploads=[[None]] * task.n_clients)

    table = check_implementation(BadUploads(), mode="white", options=FAST)
    assert set(table.failed()) == {"scale_applied_once", "upload_size"}, table.format()   # the checks that read uploads
    assert all("uploads must be [client][layer]" in table[c].diagnosis for c in table.failed())
