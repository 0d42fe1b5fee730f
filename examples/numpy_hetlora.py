"""HetLoRA as the FSLoRA paper ran it, from scratch in NumPy against the baseline adapter protocol
(fslora_ref/conformance/baselines/protocol.py; no fslora_ref code):

    fslora crosscheck --algorithm hetlora examples/numpy_hetlora.py:impl      # every check passes

Clients train the first k_i columns of B / rows of A with coefficient s sqrt(r/k_i) (rsLoRA at their
rank); the server adds the mean zero-padded change (server - client, negated) over the participants.
"""
import numpy as np


def local_sgd(task, i, pairs, c, merged):
    """task.local_steps full-batch SGD steps of client i on W = W0 + M + c B A (both factors from the same W)."""
    pairs = [(np.array(B, float), np.array(A, float)) for B, A in pairs]
    for _ in range(task.local_steps):
        G = task.oracles[i]([W0 + M + c * B @ A for W0, M, (B, A) in zip(task.base_weights, merged, pairs)])
        pairs = [(B - task.lr * c * g @ A.T, A - task.lr * c * B.T @ g) for (B, A), g in zip(pairs, G)]
    return pairs


class NumpyHetLoRA:
    name = "examples/numpy_hetlora"
    algorithm = "hetlora"
    options = {"aggregate": "delta", "scaling": "rslora"}

    def coefficient(self, task, k):
        return task.lora_scaling * np.sqrt(task.rank / k)

    def average_changes(self, layers, trained):
        """X + (1/N) sum_i pad(X_i - X[:k_i]): coordinates no client trained stay."""
        new = []
        for l, (B, A) in enumerate(layers):
            B, A = np.array(B, float), np.array(A, float)
            dB, dA = np.zeros_like(B), np.zeros_like(A)
            for client in trained:
                Bi, Ai = client[l]
                k = Bi.shape[1]
                dB[:, :k] += Bi - B[:, :k]
                dA[:k, :] += Ai - A[:k, :]
            new.append((B + dB / len(trained), A + dA / len(trained)))
        return new

    def aggregate(self, task):
        return self.average_changes(task.layers, task.trained)

    def run_rounds(self, task):
        layers, out = task.layers, []
        zero = [np.zeros_like(W) for W in task.base_weights]
        for _ in range(task.rounds):
            trained = [local_sgd(task, i, [(B[:, :k], A[:k, :]) for B, A in layers], self.coefficient(task, k), zero)
                       for i, k in enumerate(task.budgets)]
            layers = self.average_changes(layers, trained)
            out.append([task.lora_scaling * B @ A for B, A in layers])
        return out


impl = NumpyHetLoRA()
