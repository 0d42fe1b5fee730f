"""FedIT (plain federated LoRA) from scratch in NumPy against the baseline adapter protocol:

    fslora crosscheck --algorithm fedit examples/numpy_fedit.py:impl          # every check passes

Every client trains the full rank-r pair from the server's; the server averages B and A separately.
"""
import numpy as np

from numpy_hetlora import local_sgd


class NumpyFedIT:
    name = "examples/numpy_fedit"
    algorithm = "fedit"
    options = {"weighting": "uniform"}

    def average(self, trained, weights):
        return [(sum(w * c[l][0] for w, c in zip(weights, trained)), sum(w * c[l][1] for w, c in zip(weights, trained)))
                for l in range(len(trained[0]))]

    def aggregate(self, task):
        return self.average(task.trained, np.full(task.n_clients, 1.0 / task.n_clients))

    def run_rounds(self, task):
        layers, out = task.layers, []
        zero = [np.zeros_like(W) for W in task.base_weights]
        for _ in range(task.rounds):
            trained = [local_sgd(task, i, layers, task.lora_scaling, zero) for i in range(task.n_clients)]
            layers = self.average(trained, np.full(task.n_clients, 1.0 / task.n_clients))
            out.append([task.lora_scaling * B @ A for B, A in layers])
        return out


impl = NumpyFedIT()
