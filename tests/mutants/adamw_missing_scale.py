"""Mutant: an AdamW client (declared) that trains B_I A_I without the r/k scale. Adam's first step
is nearly lr sign(g), blind to the scale of g: only the battery's probe near eps can see it."""
from fslora_ref.conformance.reference import ReferenceImplementation, sketched_client_update

DEFECT = "AdamW client missing the r/k scale"


class AdamWMissingScale(ReferenceImplementation):
    name = "mutant:adamw_missing_scale"
    optimizers = {"client": "adamw", "weight_decay": 0.01}

    def client_update(self, task, i, index_sets):
        return sketched_client_update(task, i, index_sets, scale=1.0)


impl = AdamWMissingScale()
