"""Mutant: HetLoRA-style truncation; client i always takes the first k_i indices (with r/k)."""
import numpy as np

from fslora_ref.conformance.reference import ReferenceImplementation

DEFECT = "first-k truncation instead of random selection"


class FirstK(ReferenceImplementation):
    name = "mutant:first_k"

    def draw_index_sets(self, task):
        return [[np.arange(k)] * task.n_layers for k in task.budgets]

    def white_box_round(self, task):
        return self._round(task, self.draw_index_sets(task))

    def sample_sketch(self, rank, k, seed):
        d = np.zeros(rank)
        d[:k] = rank / k
        return d


impl = FirstK()
