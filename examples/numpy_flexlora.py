"""FlexLoRA as the FSLoRA paper ran it, from scratch in NumPy against the baseline adapter protocol:

    fslora crosscheck --algorithm flexlora examples/numpy_flexlora.py:impl    # every check passes

The server averages the clients' products c_i B_i A_i with weights 1/N; client i restarts from the
rank-k_i truncated SVD of the average with the singular values on B (B = U_k S_k / c_i, A = V_k^T),
c_i = s sqrt(r/k_i) (rsLoRA at its rank).
"""
import numpy as np

from numpy_hetlora import local_sgd


class NumpyFlexLoRA:
    name = "examples/numpy_flexlora"
    algorithm = "flexlora"
    options = {"weighting": "uniform", "split": "on_B", "scaling": "rslora"}

    def coefficient(self, task, k):
        return task.lora_scaling * np.sqrt(task.rank / k)

    def average_products(self, task, trained):
        c = [self.coefficient(task, k) for k in task.budgets]
        return [sum(ci * client[l][0] @ client[l][1] for ci, client in zip(c, trained)) / len(trained)
                for l in range(len(trained[0]))]

    def aggregate(self, task):
        return self.average_products(task, task.trained)

    def truncation(self, dW, k, c):
        U, S, Vt = np.linalg.svd(dW, full_matrices=False)
        q = min(k, S.size)
        B, A = np.zeros((dW.shape[0], k)), np.zeros((k, dW.shape[1]))
        B[:, :q], A[:q] = U[:, :q] * (S[:q] / c), Vt[:q]
        return B, A

    def run_rounds(self, task):
        update, out = None, []
        zero = [np.zeros_like(W) for W in task.base_weights]
        for _ in range(task.rounds):
            trained = []
            for i, k in enumerate(task.budgets):
                c = self.coefficient(task, k)
                start = ([(B[:, :k], A[:k]) for B, A in task.layers] if update is None
                         else [self.truncation(dW, k, c) for dW in update])
                trained.append(local_sgd(task, i, start, c, zero))
            update = self.average_products(task, trained)
            out.append(update)
        return out


impl = NumpyFlexLoRA()
