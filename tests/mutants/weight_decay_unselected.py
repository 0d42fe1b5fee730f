"""Mutant: a full-size masked client whose weight decay also shrinks the unselected coordinates
(the gradient is masked, the decay is not: torch.optim.SGD(weight_decay=...) on masked grads)."""
from dataclasses import dataclass

import numpy as np

from fslora_ref.conformance import RoundResult
from fslora_ref.conformance.reference import SGDW, ReferenceImplementation

from ._masked import masked_client_update, mean_of_full_deltas

DEFECT = "weight decay moves unselected coordinates"


@dataclass(frozen=True)
class LeakySGDW(SGDW):
    def update(self, grads, state, params, mask=None):
        return [p - self.lr * (np.where(mk, g, 0.0) + self.weight_decay * p)
                for p, g, mk in zip(params, grads, mask)], state


class WeightDecayUnselected(ReferenceImplementation):
    name = "mutant:weight_decay_unselected"

    def _round(self, task, index_sets):
        opt = LeakySGDW(task.lr, task.weight_decay)
        full = [masked_client_update(task, i, sets, sets, sets, task.rank / task.budgets[i], optimizer=opt)
                for i, sets in enumerate(index_sets)]
        return RoundResult(mean_of_full_deltas(task, full))


impl = WeightDecayUnselected()
