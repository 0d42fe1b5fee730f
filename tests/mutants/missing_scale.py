"""Mutant: the client trains B_I A_I without the r/k scale."""
from fslora_ref.conformance.reference import ReferenceImplementation, sketched_client_update

DEFECT = "missing r/k scale"


class MissingScale(ReferenceImplementation):
    name = "mutant:missing_scale"

    def client_update(self, task, i, index_sets):
        return sketched_client_update(task, i, index_sets, scale=1.0)


impl = MissingScale()
