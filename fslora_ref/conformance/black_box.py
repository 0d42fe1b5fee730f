"""Black-box checks: the implementation draws its own sketches; the battery reads them back.

``black_box_round`` (scenarios.py) gives client i gradients supported on its own block of rows
R_i of B and columns C_i of A, so the global change on that block is client i's change / N.
Client i's index set is read off as the B columns that moved on rows R_i and the A rows that
moved on columns C_i. The state and oracles are generic (nonzero A, random gradients), so
every selected coordinate moves; ``_reference_block`` re-verifies that on each update.

The same round (same start, oracles) is run ``options.rounds`` times with round_index 0, 1, ...
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .reference import sketched_client_update
from .registry import check
from .scenarios import DEFAULT_BLACK_BOX_SHAPES, black_box_round, blocks
from .session import CheckFailed, Session, deltas, fmt_set, moved_sets
from .stats import binomial_pvalue, bonferroni_threshold


@dataclass
class RoundRecord:
    task: object
    deltas: list      # [(dB, dA)] global change per layer
    sets: list        # [client][layer] = (B columns moved on R_i, A rows moved on C_i)


def _session(impl, session):
    return session if session is not None else Session(impl)


def black_box_run(s: Session) -> list:
    """[RoundRecord] of the implementation's black-box rounds (cached per session)."""
    if "black_box_run" in s.cache:
        return s.cache["black_box_run"]
    shapes = tuple(tuple(sh) for sh in getattr(s.impl, "layer_shapes", DEFAULT_BLACK_BOX_SHAPES))
    base = black_box_round(s.dtype, shapes=shapes, seed=s.options.seed)
    N = base.n_clients
    row_blocks = [blocks(m, N) for m, _ in shapes]
    col_blocks = [blocks(n, N) for _, n in shapes]
    records = []
    for t in range(s.options.rounds):
        task = replace(base, round_index=t)
        result = s.run_round("black", task)
        sets = [moved_sets(s, task, result, rows=[rb[i] for rb in row_blocks], cols=[cb[i] for cb in col_blocks])
                for i in range(N)]
        records.append(RoundRecord(task, deltas(task, result), sets))
    s.cache["black_box_run"] = records
    s.cache["black_box_blocks"] = (row_blocks, col_blocks)
    return records


def _hint(cols, rows, k, r) -> str:
    n = max(cols.size, rows.size)
    if n == r and k < r:
        return ": every coordinate moved (no sketch applied, or weight decay on unselected coordinates)"
    if n > k:
        return ": more than k coordinates moved (index set redrawn during the round?)"
    return ""


@check("black")
def check_index_sets_coincide(impl, session=None) -> str:
    """In every round the B columns and A rows a client moved in a layer are the same index set."""
    s = _session(impl, session)
    records = black_box_run(s)
    bad = [(rec.task.round_index, i, l, cols, rows) for rec in records for i, per in enumerate(rec.sets)
           for l, (cols, rows) in enumerate(per) if not np.array_equal(cols, rows)]
    if bad:
        t, i, l, cols, rows = bad[0]
        k = records[0].task.budgets[i]
        raise CheckFailed(f"{len(bad)} of {len(records) * len(records[0].sets) * len(records[0].deltas)} "
                          f"(round, client, layer) triples differ; first: round {t}, client {i} (k={k}), layer {l}: "
                          f"B columns {fmt_set(cols)} moved but A rows {fmt_set(rows)}: B and A do not share one "
                          f"index set (independent sketches for B and A?)")
    return f"{len(records)} rounds: B and A index sets coincide"


@check("black")
def check_index_set_size(impl, session=None) -> str:
    """Each client moves exactly k_i columns of B and k_i rows of A per layer."""
    s = _session(impl, session)
    records = black_box_run(s)
    r = records[0].task.rank
    for rec in records:
        for i, per in enumerate(rec.sets):
            k = rec.task.budgets[i]
            for l, (cols, rows) in enumerate(per):
                if cols.size != k or rows.size != k:
                    raise CheckFailed(f"round {rec.task.round_index}, client {i} (k={k}, r={r}), layer {l}: "
                                      f"{cols.size} columns of B {fmt_set(cols)} and {rows.size} rows of A "
                                      f"{fmt_set(rows)} moved, expected exactly k={k}{_hint(cols, rows, k, r)}")
    return f"{len(records)} rounds: every client moved exactly k_i indices per layer"


def _valid(rec, i) -> list | None:
    per = rec.sets[i]
    k = rec.task.budgets[i]
    if all(cols.size == k and np.array_equal(cols, rows) for cols, rows in per):
        return [cols for cols, _ in per]
    return None


def _reference_block(s, rec, i, sets, row_blocks, col_blocks):
    """Reference change of client i on its blocks, checking that every selected index moves."""
    ref = sketched_client_update(rec.task, i, sets)
    out = []
    for l, ((dB_I, dA_I), I, (B0, A0)) in enumerate(zip(ref, sets, rec.task.layers)):
        dB = np.zeros(B0.shape)
        dA = np.zeros(A0.shape)
        dB[:, I], dA[I, :] = dB_I, dA_I
        moved_B = np.max(np.abs(dB[row_blocks[l][i]][:, I]), axis=0)
        moved_A = np.max(np.abs(dA[I][:, col_blocks[l][i]]), axis=1)
        floor = 100 * s.moved_tol * max(np.max(np.abs(B0)), np.max(np.abs(A0)))  # margin over detection
        if min(moved_B.min(), moved_A.min()) <= floor:  # the battery's own premise; never expected
            raise RuntimeError(f"battery design error: reference update of client {i}, layer {l} barely moves an "
                               f"index of {fmt_set(I)}; black-box inference would be unreliable")
        out.append((dB, dA))
    return out


@check("black")
def check_update_matches_reference(impl, session=None) -> str:
    """Each client's change (N x the global change on its block) equals the reference update for
    the index set it used, with the r/k scale."""
    s = _session(impl, session)
    records = black_box_run(s)
    row_blocks, col_blocks = s.cache["black_box_blocks"]
    compared = 0
    for rec in records:
        N = rec.task.n_clients
        for i in range(N):
            sets = _valid(rec, i)
            if sets is None:
                continue
            compared += 1
            ref = _reference_block(s, rec, i, sets, row_blocks, col_blocks)
            for l, ((rB, rA), (gB, gA)) in enumerate(zip(ref, rec.deltas)):
                R, C = row_blocks[l][i], col_blocks[l][i]
                for name, e, g in (("B", rB[R, :], N * gB[R, :]), ("A", rA[:, C], N * gA[:, C])):
                    scale = np.max(np.abs(e))
                    err = np.abs(g - e)
                    if np.max(err) > s.tol * scale:
                        raise CheckFailed(_mismatch(rec, i, l, name, e, g, err, scale, sets[l], R, C))
    if compared == 0:
        raise CheckFailed("no (round, client) had valid index sets (coinciding, of size k_i) to compare with the reference")
    return f"{compared} (round, client) updates equal the reference within {s.tol:g} relative"


def _mismatch(rec, i, l, name, e, g, err, scale, I, R, C) -> str:
    k, r, N = rec.task.budgets[i], rec.task.rank, rec.task.n_clients
    pos = np.unravel_index(np.argmax(err), err.shape)
    j = int(pos[1] if name == "B" else pos[0])
    glob = (int(R[pos[0]]), j) if name == "B" else (j, int(C[pos[1]]))
    c = float(np.vdot(g, e) / np.vdot(e, e))
    others = sum(1 for per in rec.sets if j in per[l][0])
    hint = ""
    if abs(c - k / r) < 0.05 * k / r:
        hint = f" (~ k/r = {k / r:.4g}: the r/k scale is missing)"
    elif abs(c - r / k) < 0.05 * r / k:
        hint = f" (~ r/k = {r / k:.4g}: the r/k scale is applied twice)"
    col_ratio = g[:, j] if name == "B" else g[j, :]
    col_ref = e[:, j] if name == "B" else e[j, :]
    cj = float(np.vdot(col_ratio, col_ref) / np.vdot(col_ref, col_ref))
    if others != N and abs(cj - N / others) < 1e-3 * N:
        hint = (f" (index {j} was selected by {others} of {N} clients this round and its change is {cj:.4g} = "
                f"N/{others} x the reference: averaged over the selecting clients instead of N)")
    return (f"round {rec.task.round_index}, client {i} (k={k}, I={fmt_set(I)}), layer {l}, {name}{list(glob)}: the "
            f"reference update is {e[pos]:.6g}, the client's change (N x the global change) {g[pos]:.6g}; over the "
            f"client's block the change is {c:.4g} x the reference{hint}")


@check("black")
def check_selection_frequency(impl, session=None) -> str:
    """Each index is selected with frequency k_i/r, each pair with k_i(k_i-1)/(r(r-1)), and draws
    are independent across layers and clients (joint frequency (k_i/r)(k_i'/r)).

    Exact two-sided binomial tests (rounds are independent, so every count is exactly binomial
    under a correct sampler), Bonferroni over all of them: family-wise false-alarm rate <= alpha.
    """
    s = _session(impl, session)
    records = black_box_run(s)
    R, r = len(records), records[0].task.rank
    budgets = records[0].task.budgets
    L = len(records[0].deltas)
    member = np.zeros((len(budgets), L, R, r), dtype=int)   # member[i, l, t, j]: j in I_il in round t
    for t, rec in enumerate(records):
        for i in range(len(budgets)):
            for l in range(L):
                member[i, l, t, rec.sets[i][l][0]] = 1
    tests = []

    def add(counts, prob, what, formula):
        for idx in np.ndindex(counts.shape):
            c = int(counts[idx])
            tests.append((binomial_pvalue(c, R, prob), what(idx), c, R * prob, formula, prob))

    for i, k in enumerate(budgets):
        for l in range(L):
            where = f"client {i} (k={k}, r={r}), layer {l}"
            add(member[i, l].sum(axis=0), k / r, lambda ix, w=where: f"{w}: index {ix[0]} was selected", "k/r")
            if k >= 2:
                pairs = member[i, l].T @ member[i, l]
                iu = np.triu_indices(r, 1)
                add(pairs[iu], k * (k - 1) / (r * (r - 1)),
                    lambda ix, w=where, iu=iu: f"{w}: indices ({iu[0][ix[0]]}, {iu[1][ix[0]]}) were selected together",
                    "k(k-1)/(r(r-1))")
            for l2 in range(l + 1, L):
                add(member[i, l].T @ member[i, l2], (k / r) ** 2,
                    lambda ix, i=i, l=l, l2=l2: f"client {i}: index {ix[0]} of layer {l} and index {ix[1]} of layer "
                                                f"{l2} were selected together (sketches not independent across layers?)",
                    "(k/r)^2")
        for i2 in range(i + 1, len(budgets)):
            k2 = budgets[i2]
            for l in range(L):
                add(member[i, l].T @ member[i2, l], (k / r) * (k2 / r),
                    lambda ix, i=i, i2=i2, l=l: f"layer {l}: index {ix[0]} of client {i} and index {ix[1]} of client "
                                                f"{i2} were selected together (sketches not independent across clients?)",
                    "(k_i/r)(k_i'/r)")
    threshold = bonferroni_threshold(s.options.alpha, len(tests))
    p, what, c, expect, formula, prob = min(tests, key=lambda x: x[0])
    if p < threshold:
        raise CheckFailed(f"{what} in {c} of {R} rounds, expected {expect:.1f} ({formula} = {prob:.4g}); exact binomial "
                          f"p = {p:.3g} < alpha/T = {threshold:.3g} (alpha = {s.options.alpha:g}, Bonferroni over "
                          f"T = {len(tests)} tests)")
    return (f"{len(tests)} frequency tests over {R} rounds: smallest p = {p:.3g} >= alpha/T = {threshold:.3g} "
            f"(alpha = {s.options.alpha:g})")
