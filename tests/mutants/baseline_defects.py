"""Realistic defects of third-party baselines, each built on the bundled examples (examples/numpy_*.py)
and each caught by ``fslora crosscheck --algorithm ...`` with a message that names it:

    fslora crosscheck --algorithm fedit tests.mutants.baseline_defects:first_client_fedit
"""
from __future__ import annotations

import os
import sys

import numpy as np

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")
if EXAMPLES not in sys.path:
    sys.path.append(EXAMPLES)

from numpy_fedit import NumpyFedIT  # noqa: E402
from numpy_flexlora import NumpyFlexLoRA  # noqa: E402
from numpy_flora import NumpyFLoRA  # noqa: E402
from numpy_hetlora import NumpyHetLoRA, local_sgd  # noqa: E402


class FirstClientFedIT(NumpyFedIT):
    """FedAvg weighted by data size whose running sum goes to a misspelt name (ATP-1010/FederatedLLM
    ``fed_utils/model_aggregation.py`` ``FedAvg``: ``weighted_sindgle_weights``): only p_0 X_0 is kept."""

    name = "defect: FedIT keeps only the first client"
    options = {"weighting": "data_size"}

    def average(self, trained, weights):
        for k, client in enumerate(trained):
            if k == 0:
                weighted_single_weights = [(weights[0] * B, weights[0] * A) for B, A in client]
            else:
                weighted_sindgle_weights = [(tB + weights[k] * B, tA + weights[k] * A)  # noqa: F841 (the typo)
                                            for (tB, tA), (B, A) in zip(weighted_single_weights, client)]
        return weighted_single_weights

    def aggregate(self, task):
        sizes = np.asarray(task.client_sizes, dtype=float)
        return self.average(task.trained, sizes / sizes.sum())

    def run_rounds(self, task):
        sizes = np.asarray(task.client_sizes, dtype=float)
        layers, out = task.layers, []
        zero = [np.zeros_like(W) for W in task.base_weights]
        for _ in range(task.rounds):
            trained = [local_sgd(task, i, layers, task.lora_scaling, zero) for i in range(task.n_clients)]
            layers = self.average(trained, sizes / sizes.sum())
            out.append([task.lora_scaling * B @ A for B, A in layers])
        return out


class MatrixAveragingHetLoRA(NumpyHetLoRA):
    """Declares the delta rule but averages the zero-padded client matrices."""

    name = "defect: HetLoRA averages matrices, declares deltas"

    def average_changes(self, layers, trained):
        new = []
        for l, (B, A) in enumerate(layers):
            sB, sA = np.zeros(np.shape(B)), np.zeros(np.shape(A))
            for client in trained:
                Bi, Ai = client[l]
                sB[:, :Bi.shape[1]] += Bi
                sA[:Ai.shape[0], :] += Ai
            new.append((sB / len(trained), sA / len(trained)))
        return new


class SizeWeightedFlexLoRA(NumpyFlexLoRA):
    """Declares uniform weights but weights the products by client data size."""

    name = "defect: FlexLoRA weights by size, declares uniform"

    def average_products(self, task, trained):
        c = [self.coefficient(task, k) for k in task.budgets]
        w = np.asarray(task.client_sizes, dtype=float) / np.sum(task.client_sizes)
        return [sum(wi * ci * client[l][0] @ client[l][1] for wi, ci, client in zip(w, c, trained))
                for l in range(len(trained[0]))]


class NoReinitFLoRA(NumpyFLoRA):
    """Merges the stack but lets each client continue from its last trained pair (no fresh init)."""

    name = "defect: FLoRA forgets to re-initialise"

    def run_rounds(self, task):
        merged, out, last = [np.zeros_like(W) for W in task.base_weights], [], {}
        for t in range(task.rounds):
            trained = []
            for i, k in enumerate(task.budgets):
                start = last.get(i, task.fresh_pairs[t][i])
                trained.append(local_sgd(task, i, start, task.lora_scaling * np.sqrt(task.rank / k), merged))
                last[i] = trained[-1]
            merged = self.merge(task, merged, trained)
            out.append(merged)
        return out


first_client_fedit = FirstClientFedIT()
matrix_hetlora = MatrixAveragingHetLoRA()
size_weighted_flexlora = SizeWeightedFlexLoRA()
no_reinit_flora = NoReinitFLoRA()
