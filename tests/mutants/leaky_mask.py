"""Mutant: a full-size masked client whose mask leaks: unselected columns of B / rows of A carry a
coefficient 1e-4 s instead of 0, so they move with a tiny gradient (not a multiple of themselves)."""
import numpy as np

from fslora_ref.client import local_train
from fslora_ref.conformance.protocol import OracleProblem
from fslora_ref.conformance.reference import SGDW, ReferenceImplementation
from fslora_ref.lora import LayerFactors

DEFECT = "mask leaks a tiny gradient to unselected coordinates"
LEAK = 1e-4


class LeakyMask(ReferenceImplementation):
    name = "mutant:leaky_mask"

    def client_update(self, task, i, index_sets):
        factors = []
        for (B, A), I in zip(task.layers, index_sets):
            coeff = np.full(task.rank, LEAK * task.lora_scaling)
            coeff[I] = task.lora_scaling * task.rank / len(I)
            factors.append(LayerFactors(np.array(B, float), np.array(A, float), coeff))
        trained, _ = local_train(OracleProblem(task.base_weights, task.oracles), i, factors, steps=task.local_steps,
                                 optimizer=SGDW(task.lr, task.weight_decay), rng=None)
        return [(B - f.B, A - f.A) for (B, A), f in zip(trained, factors)]   # full-size: what moved is uploaded


impl = LeakyMask()
