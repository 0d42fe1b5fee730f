"""Issue 19's acceptance cases at the default settings: randomised scenarios catch defects that show only
at N >= 5 or r = 16, writing into inputs is a named failure, a 16%-biased shuffle fails in black-box
mode, server-side draws in client order conform, and the diagnoses point at the actual defect."""
import numpy as np
import pytest

from fslora_ref.conformance import Options, check_implementation
from fslora_ref.conformance.reference import ReferenceImplementation, average_over_clients, sketched_client_update
from fslora_ref.conformance.scenarios import random_white_box_round, statistical_black_box_spec
from fslora_ref.conformance.session import Session
from fslora_ref.conformance.black_box import black_box_plan
from fslora_ref.conformance.stats import detectable_bias
from tests.conformance.test_examples import load

DEFAULT = Options()


class ChunkedMean(ReferenceImplementation):
    """The server sums client changes in chunks of 4 (as a memory-bounded accumulator would) and averages
    the chunk means: exact for N <= 4 (and N = 8), wrong for N = 5, 6, 7, ..."""
    name = "defect: mean of chunk means"

    def aggregate(self, task, index_sets, uploads):
        chunks = [range(c, min(c + 4, task.n_clients)) for c in range(0, task.n_clients, 4)]
        full = [average_over_clients(task, [index_sets[i] for i in ch], [uploads[i] for i in ch]) for ch in chunks]
        return [(np.mean([f[l][0] for f in full], axis=0), np.mean([f[l][1] for f in full], axis=0))
                for l in range(task.n_layers)]


class Rank16FastPath(ReferenceImplementation):
    """A path specialised to r = 16 (one 16-wide tile) that forgets the r/k scale; every other rank is right."""
    name = "defect: r = 16 fast path"

    def client_update(self, task, i, index_sets):
        if task.rank == 16:
            return sketched_client_update(task, i, index_sets, scale=1.0)
        return super().client_update(task, i, index_sets)


class WritesIndexSets(ReferenceImplementation):
    """Draws its own sets and writes them back into the task it was handed (white-box)."""
    name = "defect: writes its index sets into the task"

    def white_box_round(self, task):
        drawn = self.draw_index_sets(task)
        for given, mine in zip(task.index_sets, drawn):
            for I, J in zip(given, mine):
                if len(I) == len(J):
                    I[:] = np.sort(J)
        return self._round(task, task.index_sets)


class UpdatesInPlace(ReferenceImplementation):
    """Black-box: adds the averaged change into the task's own factors (and returns them)."""
    name = "defect: updates the task's factors in place"

    def black_box_round(self, task):
        result = super().black_box_round(task)
        for (B, A), (nB, nA) in zip(task.layers, result.layers):
            B[...], A[...] = nB, nA
        return [(B, A) for B, A in task.layers]


class BiasedShuffle(ReferenceImplementation):
    """Draws a uniform k-subset, but when index 0 is in it reshuffles once with probability 0.16 / (1 - k/r):
    index 0 is then included with probability (k/r)(1 - 0.16), a 16% inclusion bias (at every r and k)."""
    name = "defect: 16%-biased shuffle"

    def draw_index_sets(self, task):
        out = []
        for k, cid in zip(task.budgets, task.client_ids):
            rng = np.random.default_rng([task.seed, task.round_index, int(cid), 99])
            per = []
            for _ in range(task.n_layers):
                I = rng.choice(task.rank, k, replace=False)
                if 0 in I and k < task.rank and rng.uniform() < 0.16 / (1 - k / task.rank):
                    I = rng.choice(task.rank, k, replace=False)
                per.append(np.sort(I))
            out.append(per)
        return out


class NaiveShuffle(ReferenceImplementation):
    """The classic naive shuffle (swap position i with any j in [0, r)), first k taken."""
    name = "defect: naive shuffle"

    def draw_index_sets(self, task):
        out = []
        for k, cid in zip(task.budgets, task.client_ids):
            rng = np.random.default_rng([task.seed, task.round_index, int(cid)])
            per = []
            for _ in range(task.n_layers):
                p = np.arange(task.rank)
                for i in range(task.rank):
                    j = rng.integers(0, task.rank)
                    p[i], p[j] = p[j], p[i]
                per.append(np.sort(p[:k]))
            out.append(per)
        return out


def test_default_scenarios_cover_large_n_and_ranks_other_than_8():
    whites = [random_white_box_round(np.float64, 0, i) for i in range(6)]
    assert any(t.n_clients >= 5 for t in whites) and {12, 16, 32} <= {t.rank for t in whites}
    assert any(1 in t.budgets and t.rank in t.budgets for t in whites)
    stat = statistical_black_box_spec(0)
    assert stat.n_clients >= 5 and stat.rank != 8
    for seed in range(20):   # every seed: the anchors hold
        t = random_white_box_round(np.float64, seed, 0)
        assert 5 <= t.n_clients <= 7 and t.rank == 16
        assert statistical_black_box_spec(seed, "llama").n_clients >= 5


def test_default_power_reaches_fifteen_percent():
    specs, threshold = black_box_plan(Session(ReferenceImplementation(), DEFAULT))
    stat = specs[0]
    for k in {k for k in stat.budgets if stat.rank <= 4 * k <= 3 * stat.rank}:
        trials = stat.rounds * stat.budgets.count(k) * len(stat.shapes)
        assert detectable_bias(trials, k / stat.rank, threshold, 0.9) <= 0.15


def test_a_defect_only_at_n_of_five_or_more_fails():
    table = check_implementation(ChunkedMean(), mode="white")
    assert table.failed() == ["round_matches_reference"], table.format()
    assert "instead of 1/N" in table["round_matches_reference"].diagnosis


def test_a_defect_only_at_rank_16_fails():
    table = check_implementation(Rank16FastPath(), mode=["white", "black"])
    assert "round_matches_reference" in table.failed() and "update_matches_reference" in table.failed(), table.format()
    assert "r=16" in table["update_matches_reference"].diagnosis and "random_0" in table["round_matches_reference"].diagnosis


def test_writing_into_inputs_is_a_named_failure():
    table = check_implementation(WritesIndexSets(), mode="white")
    assert "inputs_unchanged_white" in table.failed() and "round_matches_reference" in table.failed(), table.format()
    assert "task.index_sets" in table["inputs_unchanged_white"].diagnosis
    table = check_implementation(UpdatesInPlace(), mode="black")
    assert table.failed() == ["inputs_unchanged_black"], table.format()
    assert "task.layers[0] B" in table["inputs_unchanged_black"].diagnosis


def test_a_sixteen_percent_biased_shuffle_fails_in_black_box_mode():
    table = check_implementation(BiasedShuffle(), mode="black")
    assert table.failed() == ["selection_frequency"], table.format()
    assert "index 0 was selected" in table["selection_frequency"].diagnosis


def test_the_naive_shuffle_fails_in_black_box_mode():
    table = check_implementation(NaiveShuffle(), mode="black")
    assert table.failed() == ["selection_frequency"], table.format()


def test_server_side_draws_in_client_order_conform():
    table = check_implementation(load("numpy_server_draws").impl)
    assert table.ok and table.verdict == "conforms", table.format()
    assert "power:" in table["selection_frequency"].diagnosis


@pytest.mark.parametrize("seed", [1, 2])
def test_the_reference_conforms_at_other_seeds_quickly(seed):
    table = check_implementation(ReferenceImplementation(), options=Options(seed=seed, budget="quick"))
    assert table.ok, table.format()
