"""Mutant: no sketch at all; every client trains and uploads the full rank-r pair (FedIT)."""
import numpy as np

from fslora_ref.conformance.reference import ReferenceImplementation

DEFECT = "no sketch applied: every client trains all r coordinates"


class NoSketch(ReferenceImplementation):
    name = "mutant:no_sketch"

    def draw_index_sets(self, task):
        return [[np.arange(task.rank)] * task.n_layers for _ in range(task.n_clients)]

    def white_box_round(self, task):
        return self._round(task, self.draw_index_sets(task))

    def sample_sketch(self, rank, k, seed):
        return np.ones(rank)


impl = NoSketch()
