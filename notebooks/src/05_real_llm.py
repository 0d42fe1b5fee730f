# %% [markdown]
# # 05 · FSLoRA on a real LLM
#
# `llm_bridge/` runs the same Algorithm 1 on the PEFT LoRA layers of a causal language model: the
# server side is the reference's own (`configure_round` draws the sketches, `aggregate` scatters and
# averages), only `client_update` trains on torch. Each client replaces every LoRA layer's $(B, A)$ by
# the rank-$k_i$ block $(B_I, A_I)$ with scaling $s\,r/k_i$, so its parameters, gradients and optimiser
# state scale with $k_i$.
#
# This notebook (1) checks the bridge against the NumPy reference number for number, (2) checks on the
# LLM itself that the efficient rank-$k$ client and the masked client of Algorithm 1 agree, (3) fine-tunes
# the model with heterogeneous clients (non-IID data, budgets $k_i/r\in\{1/8,1/4,1/2,3/4\}$), and (4)
# reports what every client holds in memory and uploads.
#
# **Model.** By default a tiny randomly initialised 2-layer Llama (`llm_bridge.models.tiny_llama`, seconds on a
# CPU). Set `FSLORA_NOTEBOOK_MODEL=smollm2` to use SmolLM2-135M-Instruct instead — only if it is already in
# the cache (`fslora finetune --model smollm2` fetches it once); a SmolLM2 round takes ~30 s on 2 CPU cores.

# %%
import os
import time

from nbsetup import SMALL, elapsed, save  # first: sets one BLAS thread before numpy loads
import numpy as np
import torch

from fslora_ref import FedConfig, budgets_from_ratios, get_algorithm, least_squares, run_round, two_layer
from fslora_ref.client import trainable_state_floats
from fslora_ref.optim import make_client_optimizer
from llm_bridge import data as bridge_data
from llm_bridge.client import allocated_trainable_floats, train_client
from llm_bridge.federated import ModelShapes, TorchClients, global_factors
from llm_bridge.finetune import setup_torch
from llm_bridge.models import cache_dir, load_model
from llm_bridge.peft_layers import LoraLayers, add_lora
from llm_bridge.reference_task import ProblemTask, torch_model_for
from llm_bridge.task import InstructionTask, evaluate

import figures_05 as figures   # the plotting, kept out of the cells (house style: plotstyle.py)
import plotstyle as ps

ps.use()
requested = os.environ.get("FSLORA_NOTEBOOK_MODEL", "tiny")
smol_cached = os.path.exists(os.path.join(cache_dir(), "smollm2", "hf", "config.json"))
MODEL = "smollm2" if requested == "smollm2" and smol_cached else "tiny"
if requested == "smollm2" and not smol_cached:
    print(f"FSLORA_NOTEBOOK_MODEL=smollm2 but SmolLM2 is not in {cache_dir()}; using the tiny model "
          f"(run `fslora finetune --model smollm2` once to fetch it)")
# the tiny model's matrices are too small for a second thread to help (it only adds contention)
setup_torch(threads=2 if MODEL == "smollm2" else 1)
print("size:", "small" if SMALL else "full", "| model:", MODEL)

# %% [markdown]
# ## 1. The bridge equals the reference, number for number
#
# `llm_bridge.reference_task.torch_model_for(problem, ...)` turns a `fslora_ref` problem into a PEFT-wrapped
# torch network (same weights, tanh between layers) and `ProblemTask` draws the same minibatches. One round
# through `TorchClients` (the bridge's torch clients behind the reference's server) must give the server
# factors of the NumPy round in float64, for the submatrix client, the masked client, and AdamW.

# %%
def server_arrays(state):
    return [x for pair in state.layers for x in pair]


def rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


cases = [("least squares, SGD", least_squares(n_clients=4, m=12, n=10, mean_size=24, batch_size=8, seed=3), {}),
         ("least squares, masked form", least_squares(n_clients=4, m=12, n=10, mean_size=24, batch_size=8, seed=3),
          {"form": "masked"}),
         ("least squares, AdamW", least_squares(n_clients=4, m=12, n=10, mean_size=24, batch_size=8, seed=3),
          {"client_optimizer": "adamw", "lr": 0.01}),
         ("two layers (tanh), SGD", two_layer(n_clients=4, m=6, hidden=10, n=5, mean_size=20, batch_size=6, seed=5), {})]
print(f"{'case':<30} {'max rel. diff of server (B, A)':>31} {'uploads equal':>14}")
worst_ref = 0.0
for label, problem, extra in cases:
    config = FedConfig(**{**dict(rank=8, budgets=(1, 2, 4, 6), local_steps=3, lr=0.05, rounds=1, seed=11,
                                 lora_scaling=0.5), **extra})
    algo = get_algorithm("fslora")
    bridge = TorchClients(algo, LoraLayers(torch_model_for(problem, config.rank, config.lora_scaling)), ProblemTask(problem))
    state = algo.init(problem, config)
    ref_state, _, ref_up = run_round(algo, state, problem, config, 0)
    br_state, _, br_up = run_round(bridge, state, problem, config, 0)
    diff = max(rel(a, b) for a, b in zip(server_arrays(br_state), server_arrays(ref_state)))
    same_up = all(u.upload_floats == v.upload_floats and u.memory_floats == v.memory_floats for u, v in zip(br_up, ref_up))
    worst_ref = max(worst_ref, diff)
    print(f"{label:<30} {diff:>31.2e} {str(same_up):>14}")
    assert diff <= 1e-10 and same_up
    assert max(np.max(np.abs(b - a)) for a, b in zip(server_arrays(state), server_arrays(ref_state))) > 0   # it moved

# %% [markdown]
# ## 2. On the LLM: the rank-$k$ client and the masked client of Algorithm 1 agree
#
# The same FSLoRA round on the language model in float64, once with the efficient client (rank-$k_i$ LoRA
# copies) and once with the full-size masked client (rank-$r$ LoRA whose coefficient is $s\,\mathrm{diag}(S)$,
# coordinates outside $I$ restored after every step). Plain SGD, so the two are the same algorithm.

# %%
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
RANK, ALPHA = 16, 32.0
RATIOS = (0.125, 0.25, 0.5, 0.75)
N_CLIENTS = 4
FAMILIES = list(bridge_data.FAMILIES)

model64, tok = load_model(MODEL, dtype=torch.float64, seed=0)
layers64 = LoraLayers(add_lora(model64, RANK, ALPHA, TARGETS))
eq_clients = bridge_data.dirichlet_partition(2, FAMILIES, 16, 0.5, seed=1)
eq_task = InstructionTask(tok, eq_clients, batch_size=2)
eq_cfg = FedConfig(rank=RANK, budgets=(2, 8), local_steps=2, lr=0.05, rounds=1, seed=3, lora_scaling=layers64.scaling)
shapes64 = ModelShapes(layers64, eq_task.client_sizes)
algo = get_algorithm("fslora")
start = algo.init(shapes64, eq_cfg)
# a non-zero output-side factor, so the first step already moves both B_I and A_I
g = np.random.default_rng(0)
start.layers = [(B, 0.01 * g.standard_normal(A.shape)) for B, A in start.layers]
tic = time.perf_counter()
after = {form: run_round(TorchClients(algo, layers64, eq_task), start, shapes64, eq_cfg.replace(form=form), 0)
         for form in ("submatrix", "masked")}
forms_diff = max(rel(a, b) for a, b in zip(server_arrays(after["masked"][0]), server_arrays(after["submatrix"][0])))
moved = max(rel(a, b) for a, b in zip(server_arrays(after["submatrix"][0]), server_arrays(start)))
print(f"{len(layers64)} LoRA layers ({', '.join(TARGETS)}); one round, 2 clients, H = 2, in {time.perf_counter() - tic:.1f} s")
print(f"max relative difference masked vs submatrix over all layers' (B, A): {forms_diff:.2e} "
      f"(the round moved the factors by up to {moved:.1e} relative)")
assert forms_diff <= 1e-10 and moved > 1e-6
del model64, layers64

# %% [markdown]
# ## 3. Heterogeneous clients
#
# Four clients, each with a different mix of four synthetic instruction families (Dirichlet $\alpha=0.5$:
# most clients see mostly one or two families), budgets $k_i/r\in\{1/8,1/4,1/2,3/4\}$ of the global rank
# $r=16$, LoRA on the attention projections, AdamW with $H$ local steps per round (the public
# implementation's client optimiser). We record each client's local loss and the global model's loss on
# held-out examples of all four families.

# %%
if MODEL == "tiny":
    ROUNDS, H, LR, PER_CLIENT, BATCH = (8 if SMALL else 30), 5, 1e-2, 40, 4
else:
    ROUNDS, H, LR, PER_CLIENT, BATCH = (2 if SMALL else 10), 5, 2e-3, 40, 4
model, tok = load_model(MODEL, dtype=torch.float32, seed=0)
layers = LoraLayers(add_lora(model, RANK, ALPHA, TARGETS))
client_data = bridge_data.dirichlet_partition(N_CLIENTS, FAMILIES, PER_CLIENT, 0.5, seed=0)
task = InstructionTask(tok, client_data, batch_size=BATCH)
held = bridge_data.held_out_set(FAMILIES, 10, seed=0)
held_task = InstructionTask(tok, [held], batch_size=len(held))
config = FedConfig(rank=RANK, budgets=budgets_from_ratios(RANK, RATIOS, N_CLIENTS), local_steps=H, lr=LR, rounds=ROUNDS,
                   seed=0, lora_scaling=layers.scaling, client_optimizer="adamw")
shapes = ModelShapes(layers, task.client_sizes)
algo = get_algorithm("fslora")


def held_out_loss(state):
    layers.install(global_factors(algo.name, state, config, shapes.layer_shapes), trainable=False)
    with torch.no_grad():
        return float(held_task.loss(layers.model, (0, np.arange(len(held)))))


state = algo.init(shapes, config)
history = {"held": [held_out_loss(state)], "client_loss": [], "upload": [], "memory": []}
tic = time.perf_counter()
for t in range(ROUNDS):
    state, plans, uploads = run_round(TorchClients(algo, layers, task), state, shapes, config, t)
    history["client_loss"].append([float(np.mean(u.losses)) for u in uploads])
    history["upload"].append([u.upload_floats for u in uploads])
    history["memory"].append([u.memory_floats for u in uploads])
    history["held"].append(held_out_loss(state))
print(f"{ROUNDS} rounds of {N_CLIENTS} clients in {time.perf_counter() - tic:.1f} s; budgets k_i = {config.budgets}")
print("held-out loss of the global model per round:", np.round(history["held"], 3))
assert np.all(np.isfinite(history["held"]))
assert history["held"][-1] < history["held"][0]          # the federated model learned something held out

# %%
mix = np.array([[sum(e.family == f for e in c) for f in FAMILIES] for c in client_data])
fig = figures.training(mix, FAMILIES, config.budgets, RANK, history["client_loss"], history["held"],
                       f"FSLoRA on {'SmolLM2-135M-Instruct' if MODEL == 'smollm2' else 'a tiny 2-layer Llama'}: "
                       f"r = {RANK}, {len(layers)} LoRA layers, H = {H}, AdamW lr = {LR:g}")
save(fig, "05_llm_training")

# %% [markdown]
# ## 4. Per-client memory and upload
#
# Upload per round is $k_i\sum_\ell(m_\ell+n_\ell)$ floats; trainable state is parameters + gradients + AdamW's
# two moment buffers, $4k_i\sum_\ell(m_\ell+n_\ell)$ floats. The accounting is checked against the tensors the
# torch client actually allocates (`allocated_trainable_floats`), and compared with FedIT, where every
# client trains the full rank $r$.

# %%
dims = sum(m + n for m, n in layers.layer_shapes)
up = np.array(history["upload"][-1])
mem = np.array(history["memory"][-1])
fedit_up = RANK * dims
fedit_mem = trainable_state_floats([(m, RANK, n) for m, n in layers.layer_shapes], make_client_optimizer("adamw", LR, 0.0))
budgets = np.array(config.budgets)
assert np.array_equal(up, budgets * dims) and np.array_equal(mem, 4 * budgets * dims) and fedit_mem == 4 * fedit_up
# measured on the live tensors of one client's local training (last round's plan of client 0)
plan0 = algo.configure_round(state, shapes, config, ROUNDS, [0])[0]
keep = {}
upload0 = train_client(layers, task, plan0, config, ROUNDS, keep=keep)
measured = allocated_trainable_floats(keep["params"], keep["optimizer"])
print(f"client 0: accounted {upload0.memory_floats} floats, allocated by torch {measured} floats")
assert measured == upload0.memory_floats
print(f"{'client':<8} {'k_i':>4} {'upload/round':>14} {'trainable state':>16} {'(MB, float32)':>14}")
for i in range(N_CLIENTS):
    print(f"{i:<8} {budgets[i]:>4} {up[i]:>14,} {mem[i]:>16,} {mem[i] * 4 / 2**20:>14.2f}")
print(f"{'FedIT':<8} {RANK:>4} {fedit_up:>14,} {fedit_mem:>16,} {fedit_mem * 4 / 2**20:>14.2f}")

fig = figures.memory_upload(budgets, up, mem * 4 / 2**20, RANK, fedit_up, fedit_mem * 4 / 2**20,
                            f"{'SmolLM2-135M' if MODEL == 'smollm2' else 'tiny Llama'}: {len(layers)} LoRA layers, "
                            f"Σ(m+n) = {dims:,} per unit of rank")
save(fig, "05_llm_memory_upload")

# %% [markdown]
# With SmolLM2 (`FSLORA_NOTEBOOK_MODEL=smollm2`, full size) the last cell also measures exact-match accuracy of
# the global model on the held-out examples (greedy decoding); the tiny random model is too small for that
# to be meaningful, so it is skipped there.

# %%
if MODEL == "smollm2" and not SMALL:
    layers.install(global_factors(algo.name, state, config, shapes.layer_shapes), trainable=False)
    ev = evaluate(layers.model, tok, held)
    print("held-out exact-match accuracy per family:", ev["accuracy"], "mean", ev["mean"])
print(f"notebook ran in {elapsed():.1f} s")
