"""The bundled NumPy example, written against the protocol only, passes every check; and an
off-by-one in its server average is caught by the aggregation check."""
import importlib.util
import os

from fslora_ref.conformance import check_implementation

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_independent_numpy_implementation_passes_everything():
    table = check_implementation(load("numpy_fslora").impl)
    assert table.ok and len(table) == 16, table.format()


def test_its_divide_by_n_minus_one_variant_is_caught():
    module = load("numpy_fslora")

    class OffByOne(module.NumpyFSLoRA):
        """Divides the summed client changes by N - 1 instead of N."""

        def round(self, task, index_sets):
            N = task.n_clients
            new = super().round(task, index_sets)
            if N == 1:
                return new
            return [(B0 + (B - B0) * N / (N - 1), A0 + (A - A0) * N / (N - 1))
                    for (B, A), (B0, A0) in zip(new, task.layers)]

    table = check_implementation(OffByOne(), mode="white")
    assert set(table.failed()) == {"aggregation_divides_by_n", "round_matches_reference", "full_rank_is_fedavg"}
    assert "/ 3, expected / 4 (N, all clients)" in table["aggregation_divides_by_n"].diagnosis
