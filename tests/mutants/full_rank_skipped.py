"""Mutant: a client whose budget is the full rank (k_i = r) is skipped as "nothing to sketch"
and contributes a zero change, so k_i = r no longer reproduces FedAvg."""
import numpy as np

from fslora_ref.conformance.reference import ReferenceImplementation, sketched_client_update

DEFECT = "clients with k_i = r skipped"


class FullRankSkipped(ReferenceImplementation):
    name = "mutant:full_rank_skipped"

    def client_update(self, task, i, index_sets):
        deltas = sketched_client_update(task, i, index_sets)
        if task.budgets[i] == task.rank:
            return [(np.zeros_like(dB), np.zeros_like(dA)) for dB, dA in deltas]
        return deltas


impl = FullRankSkipped()
