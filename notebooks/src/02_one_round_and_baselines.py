# %% [markdown]
# # 02 · One FSLoRA round, step by step, and the baselines
#
# Algorithm 1 of the paper, one round $t$ (docs/spec.md §3):
#
# 1. the server draws, for every client $i$ (and layer), one sketch $S_i^t$ with budget $k_i$;
# 2. client $i$ receives the block $(B_I, A_I)$ and runs $H$ local SGD steps on $\ell(W_0 + s\,\tfrac{r}{k_i} B_I A_I)$;
# 3. it uploads only the change of that block: $k_i(m+n)$ floats instead of $r(m+n)$;
# 4. the server scatters the blocks back at the known index sets and averages over all $N$ clients.
#
# We trace these four steps through the package's protocol (`configure_round`, `client_update`,
# `aggregate` in `fslora_ref/algorithms/`), check that the efficient *submatrix* client and the
# *masked* client of Algorithm 1 as written give the same iterates, and compare FSLoRA with FedIT,
# HetLoRA, FlexLoRA and FLoRA on heterogeneous clients. At the end you break FSLoRA yourself and watch
# `fslora crosscheck` and `fslora verify` catch it. `FSLORA_NOTEBOOK_SIZE=small` shortens the
# comparison runs (the test-suite size).

# %%
import time

from nbsetup import SMALL, elapsed, save  # first: sets one BLAS thread before numpy loads
import numpy as np

import figures_02 as figures   # the plotting, kept out of the cells (house style: plotstyle.py)
import plotstyle as ps

from fslora_ref import ALGORITHMS, FedConfig, budgets_from_ratios, get_algorithm, least_squares, run, run_round
from fslora_ref.algorithms import scatter_mean
from fslora_ref.lora import scatter


def max_diff(layers_a, layers_b):
    return max(float(np.max(np.abs(x - y))) for p, q in zip(layers_a, layers_b) for x, y in zip(p, q))

ps.use()
print("size:", "small" if SMALL else "full")

# %% [markdown]
# ## 1. A small problem, warmed up
#
# Three least-squares clients, one adapted weight $W\in\mathbb R^{8\times 6}$, global rank $r=6$ and budgets
# $k=(2,3,5)$. At initialisation $A=0$ (PEFT's convention), so we first run 4 rounds to reach a point
# where both factors are non-zero, then trace round $t=4$.

# %%
problem = least_squares(n_clients=3, m=8, n=6, mean_size=40, batch_size=8, heterogeneity=1.0, seed=1)
config = FedConfig(rank=6, budgets=(2, 3, 5), local_steps=3, lr=0.05, rounds=4, seed=2, lora_scaling=0.5)
(m, n), = problem.layer_shapes
algo = get_algorithm("fslora")
warm = run(algo, problem, config)
state, t = warm.final_state, config.rounds
print(f"m = {m}, n = {n}, r = {config.rank}, budgets = {config.budgets}, H = {config.local_steps}, "
      f"lr = {config.lr}, s = {config.lora_scaling}")
print("loss f over the warm-up rounds:", np.round(warm["loss"], 4))

# %% [markdown]
# ## 2. Steps 1–2: the server's plans, what each client receives

# %%
plans = algo.configure_round(state, problem, config, t, config.participants(t))
for p in plans:
    f = p.factors[0]
    k = config.budgets[p.client]
    print(f"client {p.client}: k = {k}, I = {p.indices[0].tolist()}, receives B_I {f.B.shape} and A_I {f.A.shape}, "
          f"coefficient s·r/k = {f.coeff[0]:.4f}, download {p.download_floats} floats "
          f"(the paper's full broadcast: {p.broadcast_floats})")
    assert f.B.shape == (m, k) and f.A.shape == (k, n)
    assert np.array_equal(f.B, state.layers[0][0][:, p.indices[0]]) and np.array_equal(f.A, state.layers[0][1][p.indices[0], :])
    assert np.allclose(f.coeff, config.lora_scaling * config.rank / k, rtol=1e-15)
    assert p.download_floats == k * (m + n) and p.broadcast_floats == config.rank * (m + n)

# %% [markdown]
# ## Step 3: local training and the upload
#
# Each client trains its block for $H$ steps (`client_update` is shared by all algorithms) and
# uploads the change of the block.

# %%
uploads = [algo.client_update(p, problem, config, t) for p in plans]
for p, u in zip(plans, uploads):
    dB, dA = u.deltas[0]
    k = config.budgets[p.client]
    print(f"client {u.client}: uploads dB_I {dB.shape} + dA_I {dA.shape} = {u.upload_floats} floats "
          f"(= k(m+n) = {k * (m + n)}; full rank would be {config.rank * (m + n)}); "
          f"trainable state {u.memory_floats} floats; minibatch loss at local step 1: {u.losses[0]:.3f}, "
          f"at step {config.local_steps}: {u.losses[-1]:.3f} (different batches)")
    assert u.upload_floats == k * (m + n)
    assert u.memory_floats == 2 * k * (m + n)        # SGD: parameters + gradients, no optimiser state

# %% [markdown]
# ## Step 4: the server scatters and averages
#
# `scatter_mean` puts every block back at its index set and divides by $N$ (all clients, including those
# that did not touch a coordinate). The picture shows $|\Delta B|$ and $|\Delta A|$ per client after
# scattering (white = exactly zero: never touched) and the server's average.

# %%
mean_delta = scatter_mean(state, plans, uploads, config)
new_state = algo.aggregate(state, plans, uploads, config)
(B0, A0), (B1, A1) = state.layers[0], new_state.layers[0]
assert np.array_equal(B1, B0 + mean_delta[0][0]) and np.array_equal(A1, A0 + mean_delta[0][1])
# the same round through the one-call loop gives bit-identical server factors
again, _, _ = run_round(algo, state, problem, config, t)
assert max_diff(again.layers, new_state.layers) == 0.0

touched = np.zeros(config.rank, dtype=int)
for p in plans:
    touched[p.indices[0]] += 1
print("clients touching each rank index j:", touched.tolist())
for j in range(config.rank):
    expect = sum(scatter(B0.shape, A0.shape, *u.deltas[0], p.indices[0])[0][:, j] for p, u in zip(plans, uploads))
    assert np.allclose(B1[:, j] - B0[:, j], expect / config.n_clients, rtol=0, atol=1e-15)

panels = [(f"client {p.client} (k={config.budgets[p.client]})", scatter(B0.shape, A0.shape, *u.deltas[0], p.indices[0]))
          for p, u in zip(plans, uploads)]
panels.append(("server average", mean_delta[0]))
fig = figures.round_trace(panels, t, config.n_clients)
save(fig, "02_round_trace")

# %% [markdown]
# ## 3. The masked form (Algorithm 1 as written) and the submatrix form agree
#
# `form="masked"` keeps the full-size $B, A$ on the client with coefficient $s\,\mathrm{diag}(S)$, forms
# $W = W_0 + sBSA$ densely, takes $G=\nabla_W\ell$ and steps $B \leftarrow B-\gamma\,G A^\top S$,
# $A\leftarrow A-\gamma\,S B^\top G$. The submatrix client only ever holds $(B_I, A_I)$. Same batches, same
# sketches: the iterates must agree to rounding, and in the masked form the coordinates outside $I$ must
# not move at all.

# %%
masked_cfg = config.replace(form="masked")
m_plans = algo.configure_round(state, problem, masked_cfg, t, masked_cfg.participants(t))
m_uploads = [algo.client_update(p, problem, masked_cfg, t) for p in m_plans]
for p, u, su in zip(m_plans, m_uploads, uploads):
    Bt, At = u.trained[0]
    outside = np.setdiff1d(np.arange(config.rank), p.indices[0])
    assert np.array_equal(Bt[:, outside], B0[:, outside]) and np.array_equal(At[outside, :], A0[outside, :])
    assert u.upload_floats == su.upload_floats
    assert max(np.max(np.abs(u.deltas[0][0] - su.deltas[0][0])), np.max(np.abs(u.deltas[0][1] - su.deltas[0][1]))) <= 1e-12
print("one round: masked clients never move coordinates outside I; uploads equal the submatrix uploads to 1e-12")

T_FORMS = 10 if SMALL else 40
histories = {}
for form in ("submatrix", "masked"):
    tic = time.perf_counter()
    histories[form] = run(algo, problem, config.replace(form=form, rounds=T_FORMS))
    print(f"{form:>9} form: {T_FORMS} rounds in {time.perf_counter() - tic:.2f} s, final loss {histories[form]['loss'][-1]:.6f}")
d_state = max_diff(histories["submatrix"].final_state.layers, histories["masked"].final_state.layers)
d_loss = max(abs(a - b) for a, b in zip(histories["submatrix"]["loss"], histories["masked"]["loss"]))
print(f"after {T_FORMS} rounds: max |B, A difference| = {d_state:.2e}, max |loss difference| over rounds = {d_loss:.2e}")
assert d_state <= 1e-12 and d_loss <= 1e-12

# %% [markdown]
# ## 4. FSLoRA against the baselines on heterogeneous clients
#
# $N=20$ least-squares clients whose optimal updates differ (heterogeneity 1.0, unequal data sizes),
# $W\in\mathbb R^{48\times32}$, global rank $r=16$, the paper's budgets $k_i/r\in\{1/8,1/4,1/2,3/4\}$,
# $H=5$ local minibatch SGD steps, $\gamma=0.01$.
#
# * **FedIT** ignores the budgets: every client trains the full rank-16 pair (more upload, more memory);
# * **HetLoRA** gives client $i$ the *first* $k_i$ components; **FlexLoRA** averages products and re-factorises
#   by SVD; **FLoRA** stacks the client pairs and merges them into the base weight.
#
# The budget-respecting methods (FSLoRA, HetLoRA, FlexLoRA, FLoRA) upload the same $\sum_i k_i(m+n)$ floats per round.

# %%
N, R, RATIOS = 20, 16, (0.125, 0.25, 0.5, 0.75)
T_CMP = 40 if SMALL else 100
het_problem = least_squares(n_clients=N, m=48, n=32, batch_size=16, heterogeneity=1.0, seed=0)
cmp_cfg = FedConfig(rank=R, budgets=budgets_from_ratios(R, RATIOS, N), local_steps=5, lr=0.01, rounds=T_CMP, seed=0)
(M_, N_), = het_problem.layer_shapes
results = {}
for name in ALGORITHMS:
    tic = time.perf_counter()
    results[name] = run(get_algorithm(name), het_problem, cmp_cfg)
    print(f"{name:>8}: final loss {results[name]['loss'][-1]:8.4f}   uploaded {results[name]['upload_floats'][-1]:>10,} floats"
          f"   ({time.perf_counter() - tic:.1f} s)")

# %%
fig = figures.loss_curves(results, f"N = {N} heterogeneous clients, r = {R}, k_i/r ∈ {{1/8, 1/4, 1/2, 3/4}}; "
                                   f"FedIT trains the full rank r on every client")
save(fig, "02_baselines_loss")

# %% [markdown]
# ### Client memory per algorithm
#
# Trainable state a client holds during local training (parameters + gradients; SGD has no optimiser
# state), grouped by the client's budget. FSLoRA, HetLoRA, FlexLoRA and FLoRA scale with $k_i$; FedIT
# needs the full rank on every client.

# %%
budgets = np.array(cmp_cfg.budgets)
fig = figures.client_memory(results, budgets, R, f"Client memory per algorithm (m = {M_}, n = {N_}, r = {R}, SGD)")
save(fig, "02_client_memory")

# %%
per_round_upload = {name: results[name]["upload_floats"][1] for name in ALGORITHMS}
print("upload per round (floats):", per_round_upload)
expected_budgeted = int(budgets.sum()) * (M_ + N_)
assert all(per_round_upload[a] == expected_budgeted for a in ("fslora", "hetlora", "flexlora", "flora"))
assert per_round_upload["fedit"] == N * R * (M_ + N_)
assert results["fslora"].peak_client_memory == [2 * int(k) * (M_ + N_) for k in budgets]
assert results["fedit"].peak_client_memory == [2 * R * (M_ + N_)] * N
final = {name: results[name]["loss"][-1] for name in ALGORITHMS}
best_budgeted = min(("hetlora", "flexlora", "flora"), key=final.get)
print(f"final loss: FSLoRA {final['fslora']:.4f}; best other budget-respecting method ({best_budgeted}) "
      f"{final[best_budgeted]:.4f}; FedIT (2.5x the upload) {final['fedit']:.4f}")
# the claim the text makes, checked on this run: at equal upload FSLoRA ends lowest among the budget-respecting methods
assert final["fslora"] < final[best_budgeted]

# %% [markdown]
# ## 5. Break it yourself
#
# The project ships deliberately broken FSLoRA implementations, one defect each, in `tests/mutants/`; every
# check of `fslora crosscheck` and every claim of `fslora verify` must catch at least one of them (that is how
# the project knows its checks can fail). Here you run both tools on one, the way you would on your own code:
#
#     fslora crosscheck tests/mutants/missing_scale.py:impl --mode white --budget quick
#     fslora verify --quick --impl tests/mutants/missing_scale.py:impl --only alg1.round_unbiased
#
# The cells call the same library functions the commands call (`fslora_ref.conformance.crosscheck.crosscheck`
# prints the command's table and returns its exit code; `theory.claims.run_all` is `verify`).
#
# **Exercise 1.** `missing_scale` is FSLoRA whose client trains $B_IA_I$ *without* the factor $r/k$. Before you
# run the next cell, predict: which crosscheck checks fail, and by what ratio is one local step too small for
# a client with $k=1$, $r=8$? And in `verify`, in which direction is the mean round change wrong?

# %%
from fslora_ref.conformance.crosscheck import crosscheck
from theory import claims
from theory.implementations import load_runner

MUTANT = "../tests/mutants/missing_scale.py:impl"          # the kernel runs in notebooks/
code = crosscheck(MUTANT, mode="white", budget="quick")
print("exit code:", code, "(0 conforms, 1 a check failed, 3 inconclusive)")
assert code == 1

# %%
out, _ = claims.run_all(quick=True, only=["alg1.round_unbiased"], impl=load_runner(MUTANT))
(claim, verdict, seconds), = out
print(f"{claim.id}: {verdict.status} ({seconds:.1f} s)\n   {claim.statement}\n   {verdict.key}")
assert verdict.status == "violated"

# %% [markdown]
# <details><summary><b>Answer to exercise 1</b> (click to open)</summary>
#
# `round_matches_reference` and `scale_applied_once` fail. The second names the defect outright: for $k=1$,
# $r=8$ one local step moves $B_I$ and $A_I$ by **1x** the unscaled step where FSLoRA moves them by $r/k=8$x.
# The other white-box checks pass — the mutant still touches only the selected coordinates, keeps one index set
# per round, divides by $N$ and uploads $k_i(m+n)$ floats — which is why each check says what it detects.
# In `verify`, `alg1.round_unbiased` compares the mean round change over 1000 rounds with $-\gamma\nabla f^S$ (its
# Bernstein radius): the mutant steps only about half as far along $-\nabla f^S$ as it should (the key's
# "step along -grad f^S" ratio), far outside the radius. Without $r/k$ the clients train the shrunk model
# $\frac{k}{r}BA$ of notebook 00, so the expected round is not the gradient step of $f^S$.
# </details>
#
# **Exercise 2.** Write your own defect. The class below is the reference client with one line you can change.
# Make it *overscale* (e.g. `scale=(task.rank / k) ** 2`, the bug of `tests/mutants/double_scale.py`), or keep the
# right scale but take one local step fewer (`steps=max(task.local_steps - 1, 1)`). Which checks catch each? Is there a
# change that crosscheck does **not** catch? (Try `scale=task.rank / k` — the correct value.)

# %%
from fslora_ref.conformance import Options
from fslora_ref.conformance.battery import check_implementation
from fslora_ref.conformance.reference import ReferenceImplementation, sketched_client_update


class MyFSLoRA(ReferenceImplementation):
    name = "my broken FSLoRA"

    def client_update(self, task, i, index_sets):
        k = task.budgets[i]
        return sketched_client_update(task, i, index_sets, scale=(task.rank / k) ** 2)   # <- change me


table = check_implementation(MyFSLoRA(), mode="white", options=Options(budget="quick"))
print(table.format())
failed = [c.check for c in table if c.outcome == "fail"]
print("failed:", failed)
assert "scale_applied_once" in failed          # the defect as shipped in this cell (edit the line above and rerun)

# %% [markdown]
# <details><summary><b>Answer to exercise 2</b></summary>
#
# With `(r/k)**2` (as shipped above), `scale_applied_once` sees one step move $B_I$ and $A_I$ by **64x** the unscaled
# step for $k=1$, $r=8$ where **8x** was expected, and names the bug ("applied twice"); `round_matches_reference` fails
# too. With one local step fewer (`steps=max(task.local_steps - 1, 1)`), `scale_applied_once` passes (each step is
# scaled right) but `round_matches_reference` and `full_rank_is_fedavg` fail: at $k_i=r$ FSLoRA must equal FedAvg,
# step for step. With the correct `task.rank / k` every check passes: the battery accepts a correct implementation,
# and "conforms" means only what its checks can detect (listed by `fslora crosscheck --list`).
# </details>

# %%
print(f"notebook ran in {elapsed():.1f} s")
