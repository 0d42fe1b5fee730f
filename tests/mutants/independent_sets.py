"""Mutant: B and A are masked with independently drawn index sets (I for B, J for A)."""
import numpy as np

from fslora_ref.conformance import RoundResult
from fslora_ref.conformance.reference import ReferenceImplementation

from ._masked import client_rng, masked_client_update, mean_of_full_deltas

DEFECT = "independent index sets for B and A"


class IndependentSets(ReferenceImplementation):
    name = "mutant:independent_sets"

    def _round(self, task, index_sets):
        full = []
        for i, sets in enumerate(index_sets):
            k = task.budgets[i]
            other = [np.sort(client_rng(task, i, l).choice(task.rank, size=k, replace=False)) for l in range(task.n_layers)]
            active = [np.union1d(I, J) for I, J in zip(sets, other)]
            full.append(masked_client_update(task, i, active, sets, other, task.rank / k))
        return RoundResult(mean_of_full_deltas(task, full))


impl = IndependentSets()
