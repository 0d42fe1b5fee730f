"""Mutant: the k indices are drawn with replacement, so repeats leave fewer than k distinct ones
(and S carries 2 r/k on a repeated index)."""
import numpy as np

from fslora_ref.conformance.reference import ReferenceImplementation

from ._masked import client_rng

DEFECT = "indices drawn with replacement"


class WithReplacement(ReferenceImplementation):
    name = "mutant:with_replacement"

    def draw_index_sets(self, task):
        return [[np.unique(client_rng(task, i, l).integers(task.rank, size=k)) for l in range(task.n_layers)]
                for i, k in enumerate(task.budgets)]

    def sample_sketch(self, rank, k, seed):
        d = np.zeros(rank)
        np.add.at(d, np.random.default_rng(seed).integers(rank, size=k), rank / k)
        return d


impl = WithReplacement()
