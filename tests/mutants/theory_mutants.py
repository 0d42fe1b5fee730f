"""Deliberately broken variants of what the theory checkers (`fslora verify`) check. Each must be caught.

The last section holds the defects from issue 9's table that no other mutant covers, as Algorithm
subclasses run through the reference's real code path (the table's other rows reuse the conformance
mutants first_k, independent_sets and per_coordinate_mean, and core_mutants.DividesBySelectors)."""
from __future__ import annotations

import numpy as np

from fslora_ref.algorithms import FSLoRA, sketched_factors
from fslora_ref.algorithms.protocol import ClientPlan, apply_server_step, lora_floats, scatter_mean
from fslora_ref.seeding import stream
from fslora_ref.sketch import Sketch, sample_sketch, sketch_moments
from theory.exact.constants import _link_output_grads
from theory.exact.moments import reference_law

from tests.mutants.core_mutants import SubmatrixWithoutScale


# -- sketch laws and samplers ------------------------------------------------------------------
def unscaled_law(r, k):
    """S = sum_{j in I} e_j e_j^T: the r/k scale forgotten."""
    diags, probs = reference_law(r, k)
    return diags * (k / r), probs


def first_k_law(r, k):
    """Always the first k coordinates (HetLoRA-style truncation)."""
    d = np.zeros(r)
    d[:k] = r / k
    return d[None, :], np.ones(1)


def overscaled_law(r, k):
    """Scale (r/k)^2 instead of r/k."""
    diags, probs = reference_law(r, k)
    return diags * (r / k), probs


class UnscaledSketch(Sketch):
    @property
    def scale(self):
        return 1.0


def unscaled_sampler(r, k, rng):
    return UnscaledSketch(r, sample_sketch(r, k, rng).indices)


def first_k_sampler(r, k, rng):
    return Sketch(r, np.arange(k))


def with_replacement_sampler(r, k, rng):
    """k draws with replacement, duplicates merged: fewer than k indices, non-uniform."""
    return Sketch(r, np.unique(rng.integers(0, r, size=k)))


# -- sketched objective and gradients -------------------------------------------------------------
def regulariser_without_r(X, B, A, s, k):
    """The penalty with the factor r dropped from the diagonal term."""
    c_k = sketch_moments(B.shape[1], k)["c_k"]
    XB = X @ B
    col = np.sum(XB * XB, axis=0) * np.sum(A * A, axis=1)
    return s * s * c_k * (float(np.sum(col)) - float(np.sum((XB @ A) ** 2))) / (2.0 * X.shape[0])


def regulariser_grad_without_cross(X, B, A, s, k):
    """Gradient that forgets the -||XBA||^2 part."""
    r = B.shape[1]
    c = s * s * sketch_moments(r, k)["c_k"] / X.shape[0]
    XB = X @ B
    return c * (X.T @ XB) @ (r * np.diag(np.sum(A * A, axis=1))), c * r * np.diag(np.sum(XB * XB, axis=0)) @ A


def lemma_grad_without_S_on_A(problem, client, B, A, diag_S, s):
    """grad_A = s B^T G: the sketch forgotten on the A side."""
    _, (G,) = problem.loss_and_weight_grads(client, [problem.base_weights[0] + s * (B * diag_S) @ A])
    return s * G @ A.T @ np.diag(diag_S), s * B.T @ G


def hvp_gauss_newton(problem, client, B, A, coeff, U, V):
    """Drops the G (V^T, U^T) cross terms: only the Gauss-Newton part of the Hessian."""
    X = problem.clients[client].X
    W = problem.base_weights[0] + (B * coeff) @ A
    _, P = _link_output_grads(problem, client, W)
    Z = X @ ((U * coeff) @ A + (B * coeff) @ V)
    if P is not None:
        Z = P * (Z - np.sum(P * Z, axis=-1, keepdims=True))
    dG = X.T @ Z / X.shape[0]
    return (dG @ A.T) * coeff, coeff[:, None] * (B.T @ dG)


# -- algorithms (run through the reference's run_round) --------------------------------------------
class SummingFSLoRA(FSLoRA):
    """Server sums the client deltas instead of averaging them."""

    name = "fslora"

    def aggregate(self, state, plans, uploads, config):
        new = super().aggregate(state, plans, uploads, config)
        n = len(uploads)
        new.layers = [(B + (n - 1) * (nB - B), A + (n - 1) * (nA - A))
                      for (B, A), (nB, nA) in zip(state.layers, new.layers)]
        return new


class UnscaledSubmatrixFSLoRA(FSLoRA):
    """Submatrix client with coefficient s (no r/k): disagrees with the masked form."""

    name = "fslora"

    def configure_round(self, state, problem, config, round_index, participants):
        plans = super().configure_round(state, problem, config, round_index, participants)
        if config.form == "submatrix":
            for p in plans:
                p.factors = [f._replace(coeff=config.lora_scaling * np.ones_like(f.coeff)) for f in p.factors]
        return plans


# -- bounds ---------------------------------------------------------------------------------------
def inverted_l_bar(L, r, budgets):
    """L-bar with k_i/r instead of r/k_i."""
    return float(np.mean([k / r for k in budgets])) * L


class DoubleScaledSubmatrixFSLoRA(FSLoRA):
    """Submatrix client with coefficient s (r/k)^2: the sketch scale applied twice."""

    name = "fslora"

    def configure_round(self, state, problem, config, round_index, participants):
        plans = super().configure_round(state, problem, config, round_index, participants)
        for p in plans:
            p.factors = [f._replace(coeff=f.coeff * (config.rank / len(f.coeff))) for f in p.factors]
        return plans


class ExplodingFSLoRA(FSLoRA):
    """Server applies 40x the averaged delta (diverges at any step size the bound covers)."""

    name = "fslora"

    def aggregate(self, state, plans, uploads, config):
        new = super().aggregate(state, plans, uploads, config)
        new.layers = [(B + 39 * (nB - B), A + 39 * (nA - A)) for (B, A), (nB, nA) in zip(state.layers, new.layers)]
        return new


# -- issue 9's table ------------------------------------------------------------------------------
class ServerDividesByNMinus1(FSLoRA):
    """The server divides the summed deltas by N - 1 instead of N (scatter_mean)."""

    def aggregate(self, state, plans, uploads, config):
        n = len(uploads)
        means = scatter_mean(state, plans, uploads, config)
        with np.errstate(divide="ignore", invalid="ignore"):   # N = 1: inf, and the run diverges as it would
            factor = np.float64(n) / (n - 1)
            return apply_server_step(state, [(dB * factor, dA * factor) for dB, dA in means], config)


class ScaleDroppedBothForms(SubmatrixWithoutScale):
    """FSLoRA.configure_round without the r/k scale in both client forms (submatrix and masked)."""

    def configure_round(self, state, problem, config, round_index, participants):
        plans = super().configure_round(state, problem, config, round_index, participants)
        if config.form == "masked":
            for p in plans:
                p.factors = [f._replace(coeff=config.lora_scaling * (f.coeff > 0)) for f in p.factors]
        return plans


# -- issue 18: defects the theorem, the round's variance and unequal budgets must see ------------------
class NoOpFSLoRA(FSLoRA):
    """The server never moves: X^{t+1} = X^t (LHS = ||grad f^S(X^0)||^2 for ever)."""

    name = "fslora"

    def aggregate(self, state, plans, uploads, config):
        return state


class SharedAcrossClientsFSLoRA(FSLoRA):
    """Sketches correlated across clients: one uniform permutation per (round, layer), client i keeps its
    first k_i entries. Each client's index set is still a uniform k_i-subset (the round's mean is right);
    their independence, hence the round's variance, is not."""

    name = "fslora"

    def configure_round(self, state, problem, config, round_index, participants):
        perms = [stream(config.seed, round=round_index, client=0, layer=l, purpose="sketch").permutation(config.rank)
                 for l in range(len(state.layers))]
        plans = []
        for i in participants:
            sketches = [Sketch(config.rank, np.sort(p[:config.budgets[i]])) for p in perms]
            factors, masks = sketched_factors(state.layers, sketches, config.lora_scaling, config.form)
            plans.append(ClientPlan(i, factors, [S.indices for S in sketches], masks,
                                    download_floats=lora_floats(state.layers, [S.k for S in sketches]),
                                    broadcast_floats=lora_floats(state.layers, [config.rank] * len(sketches))))
        return plans


class BudgetWeightedFSLoRA(FSLoRA):
    """The server weights client i's delta by k_i / mean(k) (FSLoRA exactly when all budgets are equal)."""

    name = "fslora"

    def aggregate(self, state, plans, uploads, config):
        mean_k = float(np.mean([config.budgets[p.client] for p in plans]))
        for p, up in zip(plans, uploads):
            w = config.budgets[p.client] / mean_k
            up.deltas = [(dB * w, dA * w) for dB, dA in up.deltas]
        return apply_server_step(state, scatter_mean(state, plans, uploads, config), config)
