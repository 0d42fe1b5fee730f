"""Mutant: a fresh index set at every local step (the first step uses the round's set)."""
import numpy as np

from fslora_ref.conformance import RoundResult
from fslora_ref.conformance.reference import ReferenceImplementation, sketched_client_update

from ._masked import client_rng, mean_of_full_deltas

DEFECT = "sketch redrawn every local step"


class RedrawEachStep(ReferenceImplementation):
    name = "mutant:redraw_each_step"

    def _round(self, task, index_sets):
        full = []
        for i, sets in enumerate(index_sets):
            layers = [(np.asarray(B, float).copy(), np.asarray(A, float).copy()) for B, A in task.layers]
            for step in range(task.local_steps):
                if step:
                    sets = [np.sort(client_rng(task, i, l, step).choice(task.rank, size=task.budgets[i], replace=False))
                            for l in range(task.n_layers)]
                for (B, A), I, (dB, dA) in zip(layers, sets, sketched_client_update(task, i, sets, steps=1, layers=layers)):
                    B[:, I] += dB
                    A[I, :] += dA
            full.append([(B - np.asarray(B0, float), A - np.asarray(A0, float))
                         for (B, A), (B0, A0) in zip(layers, task.layers)])
        return RoundResult(mean_of_full_deltas(task, full))


impl = RedrawEachStep()
