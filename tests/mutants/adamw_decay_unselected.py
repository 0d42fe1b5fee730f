"""Mutant: a full-size masked AdamW client (torch.optim.AdamW on masked gradients) whose decoupled
weight decay also shrinks the unselected coordinates, while it declares the optimiser acts on the
selected coordinates only (scope 'selected', the default)."""
from dataclasses import replace

from fslora_ref.conformance.reference import ReferenceImplementation, sketched_client_update

DEFECT = "AdamW weight decay moves unselected coordinates (undeclared)"


class AdamWDecayUnselected(ReferenceImplementation):
    name = "mutant:adamw_decay_unselected"
    optimizers = {"client": "adamw", "weight_decay": 0.01}

    def client_update(self, task, i, index_sets):
        return sketched_client_update(replace(task, optimizer_scope="full"), i, index_sets)


impl = AdamWDecayUnselected()
