# %% [markdown]
# # 07 · One round, interactively
#
# Move the sliders to choose a client, its budget $k_i$ and how many local steps it has taken; untick
# **scale r/k** to drop the scale and watch the bias appear. Needs a running kernel (JupyterLab: `make lab`);
# on the documentation site the cell below the sliders shows one setting of each.
#
# Left: the columns of $B$ the client holds (its index set $I$, drawn from the round's random stream).
# Middle: its local loss along the steps. Right: the bias of the model the clients train,
# $\lVert\mathbb{E}_S[BSA]-BA\rVert/\lVert BA\rVert$, exact over all $\binom{r}{k}$ index sets: zero with the
# scale, $1-k/r$ without it.

# %%
from itertools import combinations

from nbsetup import SMALL, elapsed, save  # first: sets one BLAS thread before numpy loads
import numpy as np
import ipywidgets as widgets

import pictures
import plotstyle as ps
from fslora_ref import least_squares, sample_sketch, stream
from fslora_ref.lora import LayerFactors

N, r, m, n, gamma = 3, 6, 8, 5, 0.02
problem = least_squares(n_clients=N, m=m, n=n, seed=0)
point = stream(0, round=-1, client=-1, purpose="eval")
B, A = 0.3 * point.standard_normal((m, r)), 0.3 * point.standard_normal((r, n))   # a generic server state


def local_run(client, k, steps, scaled):
    """The client's index set and its loss along ``steps`` SGD steps on its block (B_I, A_I)."""
    S = sample_sketch(r, k, stream(0, round=0, client=client, layer=0, purpose="sketch"))
    B_I, A_I = B[:, S.indices].copy(), A[S.indices, :].copy()
    coeff = (S.scale if scaled else 1.0) * np.ones(k)
    losses = []
    for _ in range(steps + 1):
        loss, [(dB, dA)] = problem.loss_and_factor_grads(client, [LayerFactors(B_I, A_I, coeff)])
        losses.append(loss)
        B_I, A_I = B_I - gamma * dB, A_I - gamma * dA
    return S, losses


def bias(k, scaled):
    """||E_S[B S A] - B A|| / ||B A||, exact: the mean over every k-subset."""
    scale = r / k if scaled else 1.0
    sets = [list(I) for I in combinations(range(r), k)]
    mean = sum(scale * B[:, I] @ A[I, :] for I in sets) / len(sets)
    return np.linalg.norm(mean - B @ A) / np.linalg.norm(B @ A)


def show(client=0, k=2, local_step=5, scaled=True):
    S, losses = local_run(client, k, local_step, scaled)
    fig, axes = ps.figure(3, size=(10, 3.2), gridspec_kw={"width_ratios": [1.4, 1, 0.8]})
    pictures.index_grid(axes[0], r, [S.indices], clients=[client], title="what the client holds")
    axes[1].plot(range(len(losses)), losses, color=ps.client_color(client), marker="o")
    axes[1].set_xlabel("local step")
    axes[1].set_ylabel("client loss f_i")
    axes[1].set_title("local training")
    pictures.bias_bars(axes[2], bias(k, True), bias(k, False), k, r)
    axes[2].patches[0 if scaled else 1].set_edgecolor(ps.SELECTED)
    axes[2].patches[0 if scaled else 1].set_linewidth(2.5)
    return fig


controls = widgets.interactive(
    show,
    client=widgets.IntSlider(value=0, min=0, max=N - 1, description="client"),
    k=widgets.IntSlider(value=2, min=1, max=r, description="k_i"),
    local_step=widgets.IntSlider(value=5, min=0, max=20, description="local step"),
    scaled=widgets.Checkbox(value=True, description="scale r/k"))
controls

# %% [markdown]
# The same picture for two fixed settings (what the documentation site shows), with the numbers the
# sliders display checked: without the scale the bias is exactly $1-k/r$, with it zero.

# %%
for k in range(1, r + 1):
    assert bias(k, True) <= 1e-12
    assert abs(bias(k, False) - (1 - k / r)) <= 1e-12
S, losses = local_run(1, 3, 10, True)
assert losses[-1] < losses[0]            # a small step on the client's own loss decreases it
fig = show(client=1, k=3, local_step=10, scaled=False)
save(fig, "07_round_without_scale")
print(f"client 1, k = 3: loss {losses[0]:.4f} -> {losses[-1]:.4f} in 10 steps; bias without r/k = {bias(3, False):.3f}")
print(f"notebook time: {elapsed():.1f} s")
