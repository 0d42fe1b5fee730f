"""FSLoRA from scratch in NumPy, written against the adapter protocol only (no fslora_ref code).

    fslora crosscheck examples/numpy_fslora.py:impl        # white-box, black-box and sampler: all pass
"""
import numpy as np


class NumpyFSLoRA:
    name = "examples/numpy_fslora"

    def client(self, task, i, sets):
        """H masked SGD steps of client i from the global factors; returns its [B_l], [A_l]."""
        s, r = task.lora_scaling, task.rank
        Bs = [np.array(B, float) for B, _ in task.layers]
        As = [np.array(A, float) for _, A in task.layers]
        sig = [np.isin(np.arange(r), I) * (r / len(I)) for I in sets]       # diag(S) per layer
        for _ in range(task.local_steps):
            G = task.oracles[i]([W0 + s * (B * g) @ A for W0, B, A, g in zip(task.base_weights, Bs, As, sig)])
            for l, (B, A, g, Gl) in enumerate(zip(Bs, As, sig, G)):
                on = g > 0
                Bs[l] = B - task.lr * (s * (Gl @ A.T) * g + task.weight_decay * B * on)
                As[l] = A - task.lr * (s * g[:, None] * (B.T @ Gl) + task.weight_decay * A * on[:, None])
        return Bs, As

    def round(self, task, index_sets):
        new = [(np.array(B, float), np.array(A, float)) for B, A in task.layers]
        for i in range(task.n_clients):
            for (B, A), (B0, A0), Bi, Ai in zip(new, task.layers, *self.client(task, i, index_sets[i])):
                B += (Bi - B0) / task.n_clients                                 # average over all N
                A += (Ai - A0) / task.n_clients
        return new

    def white_box_round(self, task):
        return self.round(task, task.index_sets)

    def black_box_round(self, task):
        rngs = [np.random.default_rng([task.seed, task.round_index, cid]) for cid in task.client_ids]
        return self.round(task, [[rng.choice(task.rank, k, replace=False) for _ in task.layers]
                                 for rng, k in zip(rngs, task.budgets)])

    def sample_sketch(self, rank, k, seed):
        d = np.zeros(rank)
        d[np.random.default_rng(seed).choice(rank, k, replace=False)] = rank / k
        return d


impl = NumpyFSLoRA()
