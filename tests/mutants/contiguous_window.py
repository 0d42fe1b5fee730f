"""Mutant: the index set is a random cyclic window {u, u+1, ..., u+k-1 mod r}: every index has the
right frequency k/r, but pairs do not (only neighbours are ever selected together)."""
import numpy as np

from fslora_ref.conformance.reference import ReferenceImplementation

from ._masked import client_rng

DEFECT = "non-uniform subsets (cyclic windows) with uniform marginals"


def window(rank, k, rng):
    return np.sort((int(rng.integers(rank)) + np.arange(k)) % rank)


class ContiguousWindow(ReferenceImplementation):
    name = "mutant:contiguous_window"

    def draw_index_sets(self, task):
        return [[window(task.rank, k, client_rng(task, i, l)) for l in range(task.n_layers)]
                for i, k in enumerate(task.budgets)]

    def sample_sketch(self, rank, k, seed):
        d = np.zeros(rank)
        d[window(rank, k, np.random.default_rng(seed))] = rank / k
        return d


impl = ContiguousWindow()
