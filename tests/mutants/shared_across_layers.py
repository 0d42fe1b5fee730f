"""Mutant: one index set per client, reused for every layer (sketches not independent across layers)."""
from fslora_ref.conformance.reference import ReferenceImplementation

DEFECT = "one index set shared by all layers"


class SharedAcrossLayers(ReferenceImplementation):
    name = "mutant:shared_across_layers"

    def draw_index_sets(self, task):
        return [[sets[0]] * task.n_layers for sets in super().draw_index_sets(task)]


impl = SharedAcrossLayers()
