"""FLoRA (stacking) as the FSLoRA paper ran it, from scratch in NumPy against the baseline adapter protocol:

    fslora crosscheck --algorithm flora examples/numpy_flora.py:impl          # every check passes

Every round each client trains a fresh pair (task.fresh_pairs) with c_i = s sqrt(r/k_i) on top of the
merged weight; the server stacks B = [B_1 ... B_N], A = [A_1; ...; A_N] / N, merges the stack with the
stacked adapter's own rsLoRA coefficient s sqrt(r/K), K = sum k_i, and starts afresh.
"""
import numpy as np

from numpy_hetlora import local_sgd


class NumpyFLoRA:
    name = "examples/numpy_flora"
    algorithm = "flora"
    options = {"weighting": "uniform", "scaling": "rslora"}

    def merge(self, task, merged, trained):
        K = sum(client[0][0].shape[1] for client in trained)
        c = task.lora_scaling * np.sqrt(task.rank / K)
        out = []
        for l, M in enumerate(merged):
            B = np.concatenate([client[l][0] for client in trained], axis=1)
            A = np.concatenate([client[l][1] for client in trained], axis=0) / len(trained)
            out.append(M + c * B @ A)
        return out

    def aggregate(self, task):
        return self.merge(task, task.merged, task.trained)

    def run_rounds(self, task):
        merged, out = [np.zeros_like(W) for W in task.base_weights], []
        for t in range(task.rounds):
            trained = [local_sgd(task, i, task.fresh_pairs[t][i], task.lora_scaling * np.sqrt(task.rank / k), merged)
                       for i, k in enumerate(task.budgets)]
            merged = self.merge(task, merged, trained)
            out.append(merged)
        return out


impl = NumpyFLoRA()
