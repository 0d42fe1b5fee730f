"""Mutant: r/k applied to both factors (B_I and A_I each scaled), so the product carries (r/k)^2."""
from fslora_ref.conformance.reference import ReferenceImplementation, sketched_client_update

DEFECT = "r/k scale applied to both B and A"


class DoubleScale(ReferenceImplementation):
    name = "mutant:double_scale"

    def client_update(self, task, i, index_sets):
        k = task.budgets[i]
        return sketched_client_update(task, i, index_sets, scale=(task.rank / k) ** 2)


impl = DoubleScale()
