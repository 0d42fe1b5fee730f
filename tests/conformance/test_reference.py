"""The reference passes every check in both modes and the sampler checks; the battery is
deterministic; the per-dtype tolerance table is what decides float32 vs float64."""
import numpy as np

from fslora_ref.conformance import CHECKS, Options, RoundResult, check_implementation, parametrize_with_checks
from fslora_ref.conformance.reference import ReferenceImplementation, impl


@parametrize_with_checks([impl])
def test_reference_conforms(impl, check):
    check(impl)


def test_reference_table_covers_every_check_and_is_deterministic():
    quick = Options(budget="quick")
    first = check_implementation(impl, options=quick)
    second = check_implementation(impl, options=quick)
    assert first.ok and [r.check for r in first] == sorted(CHECKS, key=lambda c: ("white", "black", "sampler").index(CHECKS[c].mode))
    def timeless(table):   # wall-clock seconds are the only fields allowed to differ
        report = table.to_json()
        rows = [{k: v for k, v in row.items() if k != "seconds"} for row in report.pop("results")]
        return rows, {k: v for k, v in report.items() if k not in ("seconds", "impl_seconds")}

    assert timeless(first) == timeless(second)


class Float32Reference(ReferenceImplementation):
    """The reference, rounding its result to float32 (as a float32 framework would)."""

    name = "reference-float32"
    dtype = np.float32

    def _round(self, task, index_sets):
        result = super()._round(task, index_sets)
        return RoundResult([(B.astype(np.float32), A.astype(np.float32)) for B, A in result.layers], result.uploads)


def test_float32_result_passes_with_the_float32_tolerance():
    table = check_implementation(Float32Reference(), mode=["white", "black"], options=Options(budget="quick"))
    assert table.ok, table.format()


def test_float32_result_fails_the_float64_tolerance():
    class Declared64(Float32Reference):
        dtype = np.float64

    table = check_implementation(Declared64(), mode="white")
    assert "round_matches_reference" in table.failed()
    assert "tolerance 1e-09 for float64" in table["round_matches_reference"].diagnosis


class HiddenUploads(ReferenceImplementation):
    """Exposes no uploads: the upload check must infer them from the coordinates that moved."""

    name = "hidden-uploads"

    def _round(self, task, index_sets):
        return super()._round(task, index_sets).layers


def test_upload_size_is_inferred_without_uploads():
    from tests.mutants.no_sketch import NoSketch

    class HiddenNoSketch(NoSketch):
        def _round(self, task, index_sets):
            return super()._round(task, index_sets).layers

    ok = check_implementation(HiddenUploads(), mode="white")["upload_size"]
    bad = check_implementation(HiddenNoSketch(), mode="white")["upload_size"]
    assert ok.passed and "no uploads exposed" in ok.diagnosis
    assert not bad.passed and "must upload at least" in bad.diagnosis


def test_black_box_inference_recovers_the_drawn_index_sets():
    """The sets the battery reads off the global change are exactly the ones the reference drew."""
    from fslora_ref.conformance.black_box import black_box_run
    from fslora_ref.conformance.session import Options, Session

    session = Session(impl, Options(rounds=40, budget="quick"))
    for run in black_box_run(session):
        for rec in run.records:
            drawn = impl.draw_index_sets(rec.task)      # keyed per client: alone and joint draws coincide
            for i in range(rec.task.n_clients):
                assert all(np.array_equal(I, J) for I, J in zip(rec.joint_sets(i), drawn[i]))   # read on the blocks
            for i, per in enumerate(rec.sets):                                                   # read alone
                for l, (cols, rows) in enumerate(per):
                    assert np.array_equal(cols, drawn[i][l]) and np.array_equal(rows, drawn[i][l])


def test_in_place_updates_do_not_move_the_battery_start_point():
    class InPlace(ReferenceImplementation):
        name = "in-place"

        def white_box_round(self, task):
            result = super().white_box_round(task)
            for (B, A), (B2, A2) in zip(task.layers, result.layers):
                B[...] = B2
                A[...] = A2
            return [(B, A) for B, A in task.layers]

    table = check_implementation(InPlace(), mode="white")
    # the battery's own start point is untouched (every other check passes); the write itself is named
    assert table.failed() == ["inputs_unchanged_white"], table.format()
    assert "task.layers[0] B" in table["inputs_unchanged_white"].diagnosis
