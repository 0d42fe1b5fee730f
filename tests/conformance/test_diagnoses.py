"""Diagnoses point at the defect, one realistic defect of each kind (issue 19, point 6)."""
from dataclasses import replace

import numpy as np

from fslora_ref.conformance import Options, check_implementation
from fslora_ref.conformance.reference import ReferenceImplementation, average_over_clients, sketched_client_update
from tests.conformance.test_examples import load

QUICK = Options(budget="quick", rounds=20)


class DividesByNMinusOne(ReferenceImplementation):
    """Sums the clients' changes and divides by N - 1 (the N = 1 round divides by zero)."""
    name = "defect: / (N - 1)"

    def aggregate(self, task, index_sets, uploads):
        N = task.n_clients
        mean = average_over_clients(task, index_sets, uploads)
        with np.errstate(divide="ignore", invalid="ignore"):
            return [(B0 + (B - B0) * N / np.float64(N - 1), A0 + (A - A0) * N / np.float64(N - 1))
                    for (B, A), (B0, A0) in zip(mean, task.layers)]


class DropsLastClient(ReferenceImplementation):
    """Loops over range(N - 1) and averages over N - 1 of them."""
    name = "defect: drops the last client"

    def _round(self, task, index_sets):
        kept = list(range(task.n_clients - 1))
        uploads = [self.client_update(task, i, index_sets[i]) for i in kept]
        if not kept:
            return [(np.array(B, float), np.array(A, float)) for B, A in task.layers]
        sub = replace(task, budgets=tuple(task.budgets[i] for i in kept), oracles=[task.oracles[i] for i in kept],
                      client_ids=tuple(task.client_ids[i] for i in kept))
        return self.aggregate(sub, [index_sets[i] for i in kept], uploads)


class BudgetWeighted(ReferenceImplementation):
    """Aggregates with weights k_i / sum(k) (a 'FedAvg weighted by client size' habit)."""
    name = "defect: k_i-weighted average"

    def aggregate(self, task, index_sets, uploads):
        w = np.asarray(task.budgets, float) / np.sum(task.budgets)
        weighted = [[(dB * w[i] * task.n_clients, dA * w[i] * task.n_clients) for dB, dA in up]
                    for i, up in enumerate(uploads)]
        return average_over_clients(task, index_sets, weighted)


class Float16Compute(ReferenceImplementation):
    """Declares float32 but keeps its factors in float16."""
    name = "defect: float16 compute"
    dtype = np.float32

    def _round(self, task, index_sets):
        result = super()._round(task, index_sets)
        return [(B.astype(np.float16), A.astype(np.float16)) for B, A in result.layers]


class AdamWScaleInWeights(ReferenceImplementation):
    """AdamW client that folds r/k into A's weights (trains A' = (r/k) A_I with coefficient s), as code that
    applies the sketch twice (S^2) to one factor does: Adam's step ignores the gradient's scale, so A moves
    k/r as far as the reference's."""
    name = "defect: AdamW with r/k folded into A"
    optimizers = {"client": "adamw"}

    def client_update(self, task, i, index_sets):
        k, r = task.budgets[i], task.rank
        layers = []
        for (B, A), I in zip(task.layers, index_sets):
            A2 = np.array(A, float)
            A2[I] *= r / k
            layers.append((np.asarray(B, float), A2))
        ups = sketched_client_update(task, i, index_sets, scale=1.0, layers=layers)
        return [(dB, dA * k / r) for dB, dA in ups]


def test_dividing_by_n_minus_one_is_named_not_a_server_learning_rate():
    table = check_implementation(DividesByNMinusOne(), mode="white", options=QUICK)
    for check in ("round_matches_reference", "full_rank_is_fedavg"):
        text = table[check].diagnosis
        assert "1/(N - 1) instead of 1/N" in text and "server_lr" not in text, text
    assert "single client (N = 1" in table["untouched_outside_index_set"].diagnosis
    numpy_version = load("numpy_fslora")

    class OffByOne(numpy_version.NumpyFSLoRA):
        def round(self, task, index_sets):
            N = task.n_clients
            new = super().round(task, index_sets)
            return new if N == 1 else [(B0 + (B - B0) * N / (N - 1), A0 + (A - A0) * N / (N - 1))
                                       for (B, A), (B0, A0) in zip(new, task.layers)]

    table = check_implementation(OffByOne(), mode="white", options=QUICK)
    assert "= N - 1 for every index: an off-by-one" in table["aggregation_divides_by_n"].diagnosis
    assert "instead of 1/N" in table["full_rank_is_fedavg"].diagnosis


def test_a_dropped_last_client_is_named():
    table = check_implementation(DropsLastClient(), mode="white", options=QUICK)
    assert "nothing moved at all in this round of one client (N = 1)" in table["scale_applied_once"].diagnosis
    assert "left no trace in the round" in table["round_matches_reference"].diagnosis


def test_a_budget_weighted_average_is_named():
    table = check_implementation(BudgetWeighted(), mode="white", options=QUICK)
    assert "k_i / sum(k)" in table["round_matches_reference"].diagnosis, table.format()
    table = check_implementation(BudgetWeighted(), mode="black", options=QUICK)
    assert "k_i / sum(k)" in table["update_matches_reference"].diagnosis, table.format()


def test_float16_compute_is_named_not_a_leaky_mask():
    table = check_implementation(Float16Compute(), mode="black", options=QUICK)
    text = table["index_set_size"].diagnosis
    assert "exactly a float16 number" in text and "leaks" not in text, table.format()


def test_adamw_with_the_scale_folded_into_one_factor_is_not_called_a_missing_scale():
    table = check_implementation(AdamWScaleInWeights(), mode="black", options=QUICK)
    text = table["update_matches_reference"].diagnosis
    assert "r/k folded into one factor" in text and "the r/k scale is missing" not in text, table.format()
