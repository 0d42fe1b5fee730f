# %% [markdown]
# # 00 · FSLoRA in 10 minutes
#
# **The setting.** A frozen weight $W_0$ is fine-tuned with LoRA: $W = W_0 + BA$, with $B$ of shape
# $m\times r$ and $A$ of shape $r\times n$. The server holds one such rank-$r$ pair. $N$ clients help
# train it, but client $i$ can only afford a rank $k_i \le r$ (memory, compute, upload).
#
# **The idea.** Each round, client $i$ gets a random set $I$ of $k_i$ of the $r$ rank indices and trains
# only those columns of $B$ and rows of $A$. The server puts the pieces back and averages. A scale $r/k_i$
# makes this *unbiased*: on average the clients train the server's model, not a shrunk copy of it.
#
# This notebook builds that intuition in four steps — what a client trains, why $r/k$, one round drawn,
# then the two-line proofs — each checked on the package's own code. Exercises are at the end.

# %%
from math import comb
from itertools import combinations

from nbsetup import SMALL, elapsed, save  # first: sets one BLAS thread before numpy loads
import numpy as np

import pictures
import plotstyle as ps
from fslora_ref import FedConfig, get_algorithm, least_squares, sample_sketch, stream
from fslora_ref.lora import LayerFactors
from fslora_ref.problems import sketched_loss

ps.use()
print("size:", "small" if SMALL else "full")

# %% [markdown]
# ## 1. What a client trains
#
# A client with budget $k$ draws a **random-$k$ sketch**: an index set $I$ of $k$ distinct indices out of
# $\{0, \dots, r-1\}$, uniformly among the $\binom{r}{k}$ possible sets. It receives the columns $I$ of
# $B$ and the rows $I$ of $A$ — an $m\times k$ block $B_I$ and a $k\times n$ block $A_I$ — and trains a
# rank-$k$ LoRA pair starting from them, with the update path
#
# $$W = W_0 + \tfrac{r}{k}\, B_I A_I .$$
#
# It never sees, stores or sends the other $r-k$ columns and rows.

# %%
r, k, m, n = 8, 3, 10, 6
rng = stream(0, round=-1, client=-1, purpose="eval")
B, A = rng.standard_normal((m, r)), rng.standard_normal((r, n))    # a generic server state
S = sample_sketch(r, k, stream(0, round=0, client=0, layer=0, purpose="sketch"))
print("I =", S.indices, "  r/k =", S.scale)
fig = pictures.block_picture(B, A, S.indices, S.scale)
save(fig, "00_what_a_client_trains")

# %% [markdown]
# ## 2. Why the scale $r/k$
#
# Write the client's piece as $B S A$ with the diagonal matrix $S = \frac{r}{k}\sum_{j\in I} e_j e_j^\top$:
# indeed $BSA = \frac{r}{k} B_I A_I$. Averaged over all $\binom{r}{k}$ index sets, each index $j$ is kept
# in a fraction $k/r$ of them, so **without** the scale the clients would, on average, train
# $\frac{k}{r} BA$ — the server's model shrunk by $k/r$. **With** it, the average is exactly $BA$.
#
# We check both by averaging over every index set (no sampling: an exact mean).

# %%
def mean_over_all_index_sets(B, A, k, scale):
    sets = list(combinations(range(B.shape[1]), k))
    return sum(scale * B[:, list(I)] @ A[list(I), :] for I in sets) / len(sets)


BA = B @ A
with_scale = mean_over_all_index_sets(B, A, k, r / k)
without_scale = mean_over_all_index_sets(B, A, k, 1.0)
rel = lambda M: np.linalg.norm(M - BA) / np.linalg.norm(BA)
print(f"||E[B S A] - BA|| / ||BA||:  with r/k {rel(with_scale):.1e},   without r/k {rel(without_scale):.4f}"
      f"   (1 - k/r = {1 - k / r:.4f})")
assert rel(with_scale) <= 1e-12                       # unbiased
assert abs(rel(without_scale) - (1 - k / r)) <= 1e-12  # shrunk by exactly k/r

fig, ax = ps.figure(size=(4.2, 3.4))
pictures.bias_bars(ax, rel(with_scale), rel(without_scale), k, r)
save(fig, "00_why_r_over_k")

# %% [markdown]
# ## 3. One round, drawn
#
# Four clients with budgets $k = 2, 3, 4, 8$ of $r = 8$ on a small least-squares problem. The server
# (`configure_round`) draws each client's index set from the $(\text{round}, \text{client}, \text{layer})$
# random stream; each client trains its block for $H$ local steps (`client_update`); the server scatters
# the blocks back and divides their sum by $N$ — by **all** $N$ clients, not by the number that kept
# index $j$ (`aggregate`).

# %%
N, r = 4, 8
problem = least_squares(n_clients=N, m=10, n=6, seed=0)
config = FedConfig(rank=r, budgets=(2, 3, 4, 8), local_steps=3, lr=0.02, rounds=1, seed=0)
algo = get_algorithm("fslora")
state = algo.init(problem, config)
state.layers = [(0.3 * B, 0.3 * A)]            # start from a generic point (LoRA's own init has A = 0)
plans = algo.configure_round(state, problem, config, 0, config.participants(0))
uploads = [algo.client_update(plan, problem, config, 0) for plan in plans]
new_state = algo.aggregate(state, plans, uploads, config)

index_sets = [plan.indices[0] for plan in plans]
for plan, up in zip(plans, uploads):
    print(f"client {plan.client}: k = {len(plan.indices[0])}, I = {plan.indices[0]}, uploads {up.upload_floats} floats"
          f" (k (m + n) = {len(plan.indices[0]) * 16})")

# what each client moved, column by column, scattered back to full size
per_client = np.zeros((N, r))
total_dB = np.zeros_like(B)
for plan, up in zip(plans, uploads):
    dB_I, _ = up.deltas[0]
    per_client[plan.client, plan.indices[0]] = np.linalg.norm(dB_I, axis=0)
    total_dB[:, plan.indices[0]] += dB_I
server_dB = new_state.layers[0][0] - state.layers[0][0]
print("max |server change - (1/N) sum of client changes| =", np.abs(server_dB - total_dB / N).max())
assert np.abs(server_dB - total_dB / N).max() <= 1e-12
assert all(up.upload_floats == len(p.indices[0]) * (10 + 6) for p, up in zip(plans, uploads))

fig, axes = ps.figure(2, size=(10, 3.4))
pictures.index_grid(axes[0], r, index_sets, title="the index sets the server drew (round 0)")
pictures.column_changes(axes[1], per_client, N, title="what each client moved in B, divided by N")
save(fig, "00_one_round")

# %% [markdown]
# A column that no client kept does not move; a column kept by one client moves by a quarter of that
# client's change. That division by $N$ is what the proofs below need.
#
# ## 4. The two-line proofs
#
# **$\mathbb{E}[S] = I$.** By symmetry each index $j$ belongs to the same number of $k$-subsets, so
# $P(j\in I) = \binom{r-1}{k-1}/\binom{r}{k} = k/r$, and
#
# $$\mathbb{E}[S_{jj}] = \tfrac{r}{k}\cdot P(j\in I) = \tfrac{r}{k}\cdot\tfrac{k}{r} = 1,\qquad S_{jl} = 0\ (j\ne l).$$
#
# **The round is unbiased for $f^S$.** With one local step ($H=1$) on the full data, client $i$ moves by
# $-\gamma\nabla_X f_i(W_0 + BSA)$ at its drawn $S$. The expectation over $S$ is a finite average, so it
# commutes with the gradient:
#
# $$\mathbb{E}_S\big[-\gamma \nabla_X f_i(W_0 + BSA)\big] = -\gamma\nabla_X\, \mathbb{E}_S f_i(W_0+BSA) = -\gamma \nabla f_i^S(X),$$
#
# and averaging over all $N$ clients gives $\mathbb{E}[X^{t+1}-X^t] = -\gamma\nabla f^S(X^t)$: one round is
# an unbiased gradient step on the **sketched objective** $f^S = \frac1N\sum_i \mathbb{E}_S f_i(W_0+BSA)$.
# (It equals $f$ when every $k_i = r$; otherwise $f^S$ adds a penalty — notebook 03.)
#
# Both, checked: the first by counting, the second by enumerating every index set of a client with
# $r = 4$, $k = 2$ and comparing the mean step with finite differences of the exact $f_i^S$
# (`fslora_ref.problems.sketched_loss`, computed in closed form — not from the steps).

# %%
for rr in range(1, 9):
    for kk in range(1, rr + 1):
        assert comb(rr - 1, kk - 1) * rr == comb(rr, kk) * kk          # P(j in I) = k/r, exactly

small = least_squares(n_clients=1, m=4, n=3, seed=1)
r4, k2, gamma = 4, 2, 0.1
point = stream(1, round=-1, client=-1, purpose="eval")
B4, A4 = point.standard_normal((4, r4)), point.standard_normal((r4, 3))     # a generic point X = [B; A]


def one_step_change(I):
    """-gamma x the gradient of the client's loss along its block, scattered to (m, r) and (r, n)."""
    factors = [LayerFactors(B4[:, I], A4[I, :], (r4 / k2) * np.ones(k2))]
    _, [(dB, dA)] = small.loss_and_factor_grads(0, factors)
    full_B, full_A = np.zeros_like(B4), np.zeros_like(A4)
    full_B[:, I], full_A[I, :] = -gamma * dB, -gamma * dA
    return np.concatenate([full_B.ravel(), full_A.ravel()])


mean_change = np.mean([one_step_change(list(I)) for I in combinations(range(r4), k2)], axis=0)


def f_S(x):
    Bx, Ax = x[:B4.size].reshape(B4.shape), x[B4.size:].reshape(A4.shape)
    return sketched_loss(small, 0, [(Bx, Ax)], 1.0, [k2])


x0, h = np.concatenate([B4.ravel(), A4.ravel()]), 1e-5
grad_fS = np.array([(f_S(x0 + h * e) - f_S(x0 - h * e)) / (2 * h) for e in np.eye(x0.size)])
err = np.abs(mean_change + gamma * grad_fS).max() / np.abs(gamma * grad_fS).max()
print(f"E_S[one-step change] vs -gamma grad f^S (finite differences): relative error {err:.1e}")
assert err <= 1e-6          # finite differences of a smooth quartic at h = 1e-5: ~1e-10 expected

# %% [markdown]
# ## Exercises
#
# 1. **No scale.** In section 2, what is $\lVert\mathbb{E}[BSA]-BA\rVert/\lVert BA\rVert$ without $r/k$ for
#    $k = 1$ and $k = r$? Predict, then change `k` and rerun.
# 2. **Divide by the wrong count.** In section 3, divide each column's summed change by the number of
#    clients that kept it instead of $N$. Redo the proof of section 4 with that rule: which expectation
#    breaks? (The project's mutant `tests/mutants/per_coordinate_mean.py` does exactly this.)
# 3. **Break it yourself.** Run `fslora crosscheck tests/mutants/missing_scale.py:impl` and
#    `fslora crosscheck tests/mutants/per_coordinate_mean.py:impl` in a terminal. Which checks fail, and
#    which line of the proofs above does each check test?
# 4. **All clients at full rank.** Set every budget to $k_i = r$ in section 3. What is $S$? What is $f^S$?
#    (Then FSLoRA is FedAvg on the LoRA pair — `crosscheck` has a check for that too.)
# 5. **Variance.** The scale removes the bias but not the noise: compute
#    $\mathbb{E}\lVert BSA - BA\rVert_F^2$ by enumeration for $k = 1, \dots, r$ and compare with the closed form
#    of the [spec](../spec.md) §2.2. Notebook 01 plots it.

# %%
print(f"notebook time: {elapsed():.1f} s")
