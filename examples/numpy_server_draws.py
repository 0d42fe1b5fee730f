"""FSLoRA in NumPy with the server drawing every client's sketch, as the published implementation does:
one generator per round, keyed on (seed, round), draws each client's independent uniform index sets
in client order. A client's draws therefore depend on which clients take part before it, and that is
fine: FSLoRA needs independent uniform sets, not per-client keys. The battery judges independence and
uniformity on the joint rounds, so this conforms:

    fslora crosscheck examples/numpy_server_draws.py:impl        # every check passes
"""
import numpy as np


class ServerDrawsFSLoRA:
    name = "examples/numpy_server_draws"

    def client(self, task, i, sets):
        """H masked SGD steps of client i from the global factors; returns its [B_l], [A_l]."""
        s, r = task.lora_scaling, task.rank
        Bs = [np.array(B, float) for B, _ in task.layers]
        As = [np.array(A, float) for _, A in task.layers]
        sig = [np.isin(np.arange(r), I) * (r / len(I)) for I in sets]
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
                B += (Bi - B0) / task.n_clients
                A += (Ai - A0) / task.n_clients
        return new

    def white_box_round(self, task):
        return self.round(task, task.index_sets)

    def black_box_round(self, task):
        server = np.random.default_rng([task.seed, task.round_index])      # one generator for the round
        sets = [[server.choice(task.rank, k, replace=False) for _ in task.layers] for k in task.budgets]
        return self.round(task, sets)

    def sample_sketch(self, rank, k, seed):
        d = np.zeros(rank)
        d[np.random.default_rng(seed).choice(rank, k, replace=False)] = rank / k
        return d


impl = ServerDrawsFSLoRA()
