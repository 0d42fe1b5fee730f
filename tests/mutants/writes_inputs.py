"""Mutant: updates the factors it is handed in place and returns them (both modes)."""
from fslora_ref.conformance.reference import ReferenceImplementation

DEFECT = "writes the new global factors into the task's own arrays"


class WritesInputs(ReferenceImplementation):
    name = "mutant:writes_inputs"

    def _round(self, task, index_sets):
        result = super()._round(task, index_sets)
        for (B, A), (nB, nA) in zip(task.layers, result.layers):
            B[...], A[...] = nB, nA
        return [(B, A) for B, A in task.layers]


impl = WritesInputs()
