"""FSLoRA with an AdamW client and an Adam server -- the optimisers real FSLoRA code trains with --
written from scratch in NumPy against the adapter protocol only (no fslora_ref code).

Each client trains only its rank-k blocks (B_I, A_I) with AdamW (so optimiser state and weight
decay stay on the selected coordinates), uploads their change, and the server takes one Adam step
(fresh state) on the pseudo-gradient -(1/N) sum_i change_i. The class declares those settings in
``optimizers``, so the battery compares it with the reference run the same way:

    fslora crosscheck examples/numpy_adamw_adam.py:impl                    # 16/16 pass, exit 0
    fslora crosscheck examples/numpy_adamw_adam.py:impl --optimizers client=sgd,server=average
                                                                          # exit 1: the optimiser is named
"""
import numpy as np

BETAS, EPS, WEIGHT_DECAY = (0.9, 0.999), 1e-8, 0.01          # client AdamW
SERVER_LR, SERVER_BETAS, SERVER_EPS = 1e-2, (0.9, 0.999), 1e-8  # server Adam (torch.optim.Adam defaults)


def adam_step(p, g, m, v, t, lr, betas, eps, weight_decay=0.0):
    """One bias-corrected Adam step with decoupled weight decay (torch.optim.AdamW's update)."""
    m = betas[0] * m + (1 - betas[0]) * g
    v = betas[1] * v + (1 - betas[1]) * g * g
    m_hat, v_hat = m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)
    return p - lr * (m_hat / (np.sqrt(v_hat) + eps) + weight_decay * p), m, v


class AdamWAdamFSLoRA:
    name = "examples/numpy_adamw_adam"
    optimizers = {"client": "adamw", "betas": BETAS, "eps": EPS, "weight_decay": WEIGHT_DECAY,
                  "server": "adam", "server_lr": SERVER_LR, "server_betas": SERVER_BETAS, "server_eps": SERVER_EPS}

    def client(self, task, i, sets):
        """Client i: H AdamW steps on its blocks (B_I, A_I) with coefficient s r/k; returns their changes."""
        blocks = [[np.array(B, float)[:, I], np.array(A, float)[I, :]] for (B, A), I in zip(task.layers, sets)]
        start = [[b.copy(), a.copy()] for b, a in blocks]
        moments = [[[np.zeros_like(x), np.zeros_like(x)] for x in pair] for pair in blocks]
        coeff = [task.lora_scaling * task.rank / len(I) for I in sets]
        for t in range(1, task.local_steps + 1):
            W = [W0 + c * b @ a for W0, (b, a), c in zip(task.base_weights, blocks, coeff)]
            G = task.oracles[i](W)
            grads = [[c * g @ a.T, c * b.T @ g] for (b, a), g, c in zip(blocks, G, coeff)]   # both from the same W
            for pair, grad, state in zip(blocks, grads, moments):
                for f in range(2):
                    pair[f], state[f][0], state[f][1] = adam_step(pair[f], grad[f], *state[f], t, task.lr, BETAS, EPS,
                                                                  WEIGHT_DECAY)
        return [(b - b0, a - a0) for (b, a), (b0, a0) in zip(blocks, start)]

    def round(self, task, index_sets):
        uploads = [self.client(task, i, sets) for i, sets in enumerate(index_sets)]
        new = []
        for l, (B, A) in enumerate(task.layers):
            mean_B, mean_A = np.zeros(np.shape(B)), np.zeros(np.shape(A))
            for sets, up in zip(index_sets, uploads):           # scatter back, average over all N
                mean_B[:, sets[l]] += up[l][0] / task.n_clients
                mean_A[sets[l], :] += up[l][1] / task.n_clients
            zero = [np.zeros_like(mean_B), np.zeros_like(mean_A)]   # a fresh server Adam state
            new.append((adam_step(np.array(B, float), -mean_B, zero[0], zero[0], 1, SERVER_LR, SERVER_BETAS, SERVER_EPS)[0],
                        adam_step(np.array(A, float), -mean_A, zero[1], zero[1], 1, SERVER_LR, SERVER_BETAS, SERVER_EPS)[0]))
        return {"layers": new, "uploads": uploads}

    def white_box_round(self, task):
        return self.round(task, task.index_sets)

    def black_box_round(self, task):
        rngs = [np.random.default_rng([task.seed, task.round_index, cid]) for cid in task.client_ids]
        return self.round(task, [[np.sort(rng.choice(task.rank, k, replace=False)) for _ in task.layers]
                                 for rng, k in zip(rngs, task.budgets)])

    def sample_sketch(self, rank, k, seed):
        d = np.zeros(rank)
        d[np.random.default_rng(seed).choice(rank, k, replace=False)] = rank / k
        return d


impl = AdamWAdamFSLoRA()
