# %% [markdown]
# # 01 · The sketching operator S
#
# FSLoRA gives client *i* only a random rank-$k_i$ piece of the server's rank-$r$ LoRA pair
# $(B, A)$. The piece is chosen by a **random-k sketch**
#
# $$S = \frac{r}{k}\sum_{j\in I} e_j e_j^\top,\qquad I \text{ uniform among the } k\text{-subsets of } \{1..r\},$$
#
# a diagonal $r\times r$ matrix with $k$ entries equal to $r/k$. This notebook shows what $S$ does to
# $B S A$, checks its exact moments against their closed forms (by enumerating all $\binom{r}{k}$ subsets),
# watches the Monte Carlo mean of $S$ converge to $I$ for a large $r$, and plots the variance of $BSA$
# as a function of the sketching ratio $k/r$.
#
# Everything comes from the package: `fslora_ref.sketch` (the sampler and closed forms) and
# `theory.exact.moments` (enumeration and the Monte Carlo check). Set `FSLORA_NOTEBOOK_SIZE=small` for the
# test-suite size (fewer Monte Carlo draws); the default is the full size.

# %%
from math import comb

from nbsetup import SMALL, elapsed, save  # first: sets one BLAS thread before numpy loads
import numpy as np

import figures_01 as figures   # the plotting, kept out of the cells (house style: plotstyle.py)
import plotstyle as ps
from fslora_ref import Sketch, sample_sketch, sketch_moments, stream
from theory.exact.moments import (exact_errors, monte_carlo_check, product_variance_closed_form, reference_law)

ps.use()
print("size:", "small" if SMALL else "full")

# %% [markdown]
# ## 1. One draw of S
#
# A sketch is stored as its sorted index set $I$ and the scale $r/k$. Every draw in this project comes
# from `fslora_ref.seeding.stream(seed, round=, client=, layer=, purpose=)`, so the same key gives the
# same $I$ on every machine.

# %%
r, k = 8, 3
S = sample_sketch(r, k, stream(0, round=0, client=0, layer=0, purpose="sketch"))
print("I =", S.indices, "  scale r/k =", S.scale)
print("diag(S) =", np.round(S.diagonal(), 4))
assert S.k == k and S.indices.size == np.unique(S.indices).size
assert abs(S.diagonal().sum() - r) <= 1e-12          # trace(S) = k * (r/k) = r for every draw

# %% [markdown]
# ## 2. A picture of $B S A$
#
# $S$ keeps columns $I$ of $B$ (input side, $m\times r$) and rows $I$ of $A$ (output side, $r\times n$),
# scaled by $r/k$: $\;B S A = \tfrac{r}{k} B_I A_I$. A client therefore only needs the $m\times k$ block $B_I$
# and the $k\times n$ block $A_I$.

# %%
m, n = 10, 7
rng = stream(0, round=-1, client=-1, purpose="eval")
B = rng.standard_normal((m, r))
A = rng.standard_normal((r, n))
BSA = S.sketched_product(B, A)
err_dense = np.max(np.abs(BSA - B @ S.dense() @ A))
err_block = np.max(np.abs(BSA - (r / k) * B[:, S.indices] @ A[S.indices, :]))
print(f"max |B S A - B·dense(S)·A| = {err_dense:.1e}   max |B S A - (r/k) B_I A_I| = {err_block:.1e}")
assert err_dense <= 1e-12 and err_block <= 1e-12

fig = figures.bsa_picture(B, S, A, BSA)
save(fig, "01_bsa_picture")

# %% [markdown]
# ## 3. Exact moments: enumeration next to the closed forms
#
# With $s_j = S_{jj}$ (docs/spec.md §2):
#
# | moment | closed form |
# |---|---|
# | $\mathbb E[s_j]$ | $1$ (so $\mathbb E[S]=I$, $\mathbb E[BSA]=BA$) |
# | $\mathbb E[s_j^2]$ | $r/k$ |
# | $\mathbb E[s_j s_l],\ j\ne l$ | $r(k-1)/(k(r-1))$ |
# | $\mathrm{Cov}(s)$ | $c_k(rI-\mathbf 1\mathbf 1^\top)$, $c_k=(r-k)/(k(r-1))$ |
# | $\mathbb E\|MS\|_F^2$ | $(r/k)\|M\|_F^2$ (equality) |
# | $\mathbb E\|BSA-BA\|_F^2$ | $c_k\,(r\sum_j\|b_j\|^2\|a_j\|^2-\|BA\|_F^2)$ |
#
# `theory.exact.moments.reference_law(r, k)` lists all $\binom{r}{k}$ diagonals with probability $1/\binom{r}{k}$ each,
# so the expectations below are *exact* sums, not estimates. We check every identity for every
# $1\le k\le r\le 7$.

# %%
print(f"{'r':>2} {'k':>2} {'C(r,k)':>6} {'E[s_j] (enum)':>14} {'E[s_j^2] enum':>14} {'r/k':>8} "
      f"{'E[s_j s_l] enum':>16} {'closed':>8} {'max error':>10}")
worst, worst_excess, rows = 0.0, -np.inf, []
for rr in range(2, 8):
    g = stream(rr, round=-1, client=-1, purpose="eval")
    M_, B_, A_ = g.standard_normal((3, rr)), g.standard_normal((5, rr)), g.standard_normal((rr, 4))
    for kk in range(1, rr + 1):
        diags, probs = reference_law(rr, kk)
        second = np.einsum("q,qi,qj->ij", probs, diags, diags)
        errs = exact_errors(rr, kk, M_, B_, A_)
        excess = errs.pop("max||MS||^2-(r/k)^2||M||^2")      # an inequality: reported as excess, must be <= 0
        worst, worst_excess = max(worst, max(errs.values())), max(worst_excess, excess)
        mom = sketch_moments(rr, kk)
        rows.append((rr, kk, second[0, 0], second[0, 1], mom))
        if rr in (4, 7):
            print(f"{rr:>2} {kk:>2} {comb(rr, kk):>6} {float(probs @ diags[:, 0]):>14.12f} {second[0, 0]:>14.10f} "
                  f"{mom['second']:>8.4f} {second[0, 1]:>16.12f} {mom['cross']:>8.4f} {max(errs.values()):>10.1e}")
print(f"\nworst |enumerated - closed form| over all 27 (r, k) and all 7 identities: {worst:.2e}")
print(f"largest max_S ||MS||^2 - (r/k)^2 ||M||^2 (must be <= 0): {worst_excess:.3g}")
assert worst <= 1e-12, worst
assert worst_excess <= 1e-12

# %%
rr = 7
enum = [(row[2], row[3], row[4]["c_k"]) for row in rows if row[0] == rr]
fig = figures.moments(rr, [e[0] for e in enum], [e[1] for e in enum], worst)
save(fig, "01_moments")
# Var(s_j) = E[s_j^2] - 1 = r/k - 1 = (r-1) c_k: the diagonal of c_k (r I - 1 1^T)
assert np.allclose([(e[0] - 1) / (rr - 1) for e in enum], [e[2] for e in enum], rtol=0, atol=1e-12)

# %% [markdown]
# ## 4. Monte Carlo for a large $r$: the running mean of $S$ converges to $I$
#
# For $r=64$ enumeration is out of reach ($\binom{64}{8}\approx 4.4\times10^9$), so we draw sketches with the
# core sampler and watch $\max_j|\bar s_j - 1|$ shrink like $n^{-1/2}$. The dashed lines are a
# Hoeffding + union bound over the $r$ coordinates: each $s_j\in[0, r/k]$, so with probability
# $\ge 1-\delta$, $\max_j|\bar s_j-1|\le \frac{r}{k}\sqrt{\log(2r/\delta)/(2n)}$ at a fixed $n$ ($\delta=10^{-3}$).
# `theory.exact.moments.monte_carlo_check` applies the same kind of bound to all $r+r^2$ first and second moments.

# %%
R, N_MC, DELTA = 64, (3000 if SMALL else 20000), 1e-3
ns = np.arange(1, N_MC + 1)
curves = {}
for kk in (8, 32):
    g = stream(7, round=-1, client=-1, purpose="eval")
    draws = np.array([sample_sketch(R, kk, g).diagonal() for _ in range(N_MC)])
    running = np.cumsum(draws, axis=0) / ns[:, None]
    curves[kk] = (np.max(np.abs(running - 1.0), axis=1),                      # max_j |mean of s_j - 1| after n draws
                  (R / kk) * np.sqrt(np.log(2 * R / DELTA) / (2 * ns)))        # Hoeffding + union bound
final = {kk: (err[-1], bound[-1]) for kk, (err, bound) in curves.items()}
fig = figures.monte_carlo(ns, curves, R)
save(fig, "01_monte_carlo")
for kk, (e, b) in final.items():
    print(f"k = {kk:>2}: after n = {N_MC} draws, max_j |mean - 1| = {e:.4f}  <=  bound {b:.4f}")
    assert e <= b
mc = monte_carlo_check(R, 8, N_MC, seed=11, delta=DELTA)
print("theory.exact.moments.monte_carlo_check(r=64, k=8):", {k_: f"{v:.4f} <= {mc['bounds'][k_]:.4f}"
                                                      for k_, v in mc["errors"].items()})
assert mc["ok"]

# %% [markdown]
# ## 5. The variance of $BSA$ as a function of $k/r$
#
# $BSA$ is an unbiased estimate of $BA$; its variance is exactly
# $c_k\,(r\sum_j\|b_j\|^2\|a_j\|^2-\|BA\|_F^2)$ with $c_k=(r-k)/(k(r-1))$: it blows up like $r/k$ for small
# budgets and vanishes at $k=r$. Below, the closed form (line) against a Monte Carlo estimate (markers,
# ±2 standard errors) for $r=16$, relative to $\|BA\|_F^2$.

# %%
R2, m2, n2 = 16, 12, 12
g = stream(3, round=-1, client=-1, purpose="eval")
B2 = g.standard_normal((m2, R2)) / np.sqrt(m2)
A2 = g.standard_normal((R2, n2)) / np.sqrt(R2)
BA = B2 @ A2
scale = float(np.sum(BA * BA))
N_VAR = 400 if SMALL else 4000
ks2 = np.arange(1, R2 + 1)
closed = np.array([product_variance_closed_form(B2, A2, int(kk)) for kk in ks2]) / scale
mc_mean, mc_se = [], []
for kk in ks2:
    gk = stream(100 + int(kk), round=-1, client=-1, purpose="eval")
    d2 = np.array([np.sum((sample_sketch(R2, int(kk), gk).sketched_product(B2, A2) - BA) ** 2) for _ in range(N_VAR)]) / scale
    mc_mean.append(d2.mean())
    mc_se.append(d2.std(ddof=1) / np.sqrt(N_VAR))
mc_mean, mc_se = np.array(mc_mean), np.array(mc_se)

fig = figures.variance_vs_ratio(ks2[:-1] / R2, closed[:-1], mc_mean[:-1], mc_se[:-1], N_VAR)
save(fig, "01_variance_vs_ratio")

z = np.abs(mc_mean[:-1] - closed[:-1]) / mc_se[:-1]
print("k:      ", " ".join(f"{int(x):>6}" for x in ks2[:-1]))
print("closed: ", " ".join(f"{x:>6.3f}" for x in closed[:-1]))
print("MC:     ", " ".join(f"{x:>6.3f}" for x in mc_mean[:-1]))
print(f"largest |MC - closed| / s.e. = {z.max():.2f} (tolerance 4)")
assert z.max() <= 4.0
assert closed[-1] == 0.0 and mc_mean[-1] <= 1e-24     # k = r: S = I, no variance (MC: float rounding only)
assert np.all(np.diff(closed) < 0)                    # strictly decreasing in k
print(f"notebook ran in {elapsed():.1f} s")
