"""Black-box checks: the implementation draws its own sketches; the battery reads them back.

Every round is run once per client alone (``task.only_client(i)``, same round, seed and client
identity), and the first ``JOINT_ROUNDS`` rounds also with all N clients together (the server
step is deterministic: 50 rounds cover the ways index sets overlap many times over). Run alone,
a client's change is its own:
nothing another client or a server average does can blur it. Each moved B column (A row) is
"gradient-like" (the sketched gradient step) or "decay-like" (a multiple of its own value:
weight decay, a rescaling) -- ``session.classify_moves``; the client's index set is its
gradient-like set. The joint round is compared with the reference round for the index sets the
clients drew alone (which is why draws must be keyed on (seed, round_index, client id)).

``black_box_round`` (scenarios.py) gives client i gradients supported on its own block of rows
R_i of B and columns C_i of A, so in the joint round each block is moved by its own client; the
battery reads the joint round's sets on those blocks only to explain a mismatch.

The same round (same start, oracles) is run ``options.rounds`` times with round_index 0, 1, ...
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .hints import decay_hint, optimizer_hint, relative_error
from .protocol import RoundResult
from .reference import reference_round, sketched_client_update
from .registry import check
from .scenarios import DEFAULT_BLACK_BOX_SHAPES, black_box_round, blocks
from .session import (CheckFailed, CheckInconclusive, Session, classify_moves, deltas, fmt_set, moved_sets,
                      safe_getattr)
from .stats import binomial_pvalue, bonferroni_threshold
from .white_box import compare_layers


JOINT_ROUNDS = 50


@dataclass
class RoundRecord:
    task: object      # the joint task of this round
    singles: list     # [client] RoundResult of the client alone
    moves: list       # [client][layer] Moves of the client alone
    joint: object     # RoundResult of all clients together (None after JOINT_ROUNDS)

    @property
    def sets(self) -> list:
        """[client][layer] = (gradient-like B columns, gradient-like A rows), read alone."""
        return [[(m.grad_B, m.grad_A) for m in per] for per in self.moves]

    @property
    def deltas(self) -> list | None:
        """[(dB, dA)] global change of the joint round per layer (None if it was not run)."""
        return None if self.joint is None else deltas(self.task, self.joint)

    def valid_sets(self, i) -> list | None:
        """Client i's index set per layer, if it moved exactly k_i indices, the same for B and A."""
        k = self.task.budgets[i]
        sets = [m.gradient_set for m in self.moves[i]]
        return sets if all(I is not None and I.size == k for I in sets) else None


def _session(impl, session):
    return session if session is not None else Session(impl)


def _readable(task) -> None:
    if task.optimizer_scope == "full" and task.weight_decay > 0 and task.server_optimizer == "adam":
        raise CheckInconclusive(
            "declared scope='full' with weight decay and a server Adam step: every coordinate then moves by about "
            "+-server_lr (Adam's first step on the decayed unselected ones too), so no index set can be read back "
            "from the result; use white-box mode (white_box_round) for this combination")


def black_box_run(s: Session) -> list:
    """[RoundRecord] of the implementation's black-box rounds (cached per session, failures too)."""
    def compute():
        shapes = tuple(tuple(sh) for sh in (safe_getattr(s.impl, "layer_shapes") or DEFAULT_BLACK_BOX_SHAPES))
        base = s.task(black_box_round(s.dtype, shapes=shapes, seed=s.options.seed))
        _readable(base)
        records = []
        for t in range(s.options.rounds):
            task = replace(base, round_index=t)
            alone = [task.only_client(i) for i in range(task.n_clients)]
            singles = [s.run_round("black", a) for a in alone]
            joint = s.run_round("black", task) if t < JOINT_ROUNDS else None
            records.append(RoundRecord(task, singles, [classify_moves(s, a, r) for a, r in zip(alone, singles)], joint))
        return records
    return s.memo("black_box_run", compute)


def _hint(m, k, r) -> str:
    """Why a client moved the wrong number of indices with its gradient (m: its Moves in one layer)."""
    n = m.grad_B.size
    if n > k:
        sizes = np.sort(m.size_B[m.grad_B])[::-1]
        if sizes[k] < 1e-2 * sizes[k - 1]:   # k large movements, the rest tiny
            return (f": {k} large movements and {n - k} tiny ones (at most {sizes[k] / sizes[0]:.2g} x the largest, "
                    f"not a multiple of their own value): a mask that leaks a small gradient outside I?")
        if n == r and k < r:
            return ": every coordinate moved with the gradient (no sketch applied?)"
        return ": more than k coordinates moved with the gradient (index set redrawn during the round?)"
    if 0 < n < k:
        return (": fewer than k coordinates moved (duplicate indices, drawn with replacement? a selected coordinate "
                "with no gradient?)")
    if n == 0 and m.decay_B.size:
        return ": every moved coordinate moved by a multiple of its own value (a rescaling, or only weight decay)"
    return ""


@check("black")
def check_index_sets_coincide(impl, session=None) -> str:
    """In every round the B columns and A rows a client moved (alone) in a layer are the same index set."""
    s = _session(impl, session)
    records = black_box_run(s)
    triples = [(rec.task.round_index, i, l, m.grad_B, m.grad_A) for rec in records for i, per in enumerate(rec.moves)
               for l, m in enumerate(per) if m.grad_B.size or m.grad_A.size]
    if not triples:
        raise CheckInconclusive("no client moved any coordinate with a gradient-like change: no index sets to compare")
    bad = [tr for tr in triples if not np.array_equal(tr[3], tr[4])]
    if bad:
        t, i, l, cols, rows = bad[0]
        k = records[0].task.budgets[i]
        raise CheckFailed(f"{len(bad)} of {len(triples)} (round, client, layer) triples differ; first: round {t}, client "
                          f"{i} (k={k}) alone, layer {l}: B columns {fmt_set(cols)} moved but A rows {fmt_set(rows)}: "
                          f"B and A do not share one index set (independent sketches for B and A?)")
    return f"{len(records)} rounds: B and A index sets coincide ({len(triples)} (round, client, layer) triples)"


@check("black")
def check_index_set_size(impl, session=None) -> str:
    """Each client (alone) moves exactly k_i columns of B and k_i rows of A per layer with its gradient,
    and nothing else (unless the declared scope='full' decays the others)."""
    s = _session(impl, session)
    records = black_box_run(s)
    r = records[0].task.rank
    full = records[0].task.optimizer_scope == "full"
    for rec in records:
        for i, per in enumerate(rec.moves):
            k = rec.task.budgets[i]
            alone = rec.task.only_client(i)
            for l, m in enumerate(per):
                where = f"round {rec.task.round_index}, client {i} (k={k}, r={r}) alone, layer {l}"
                if m.grad_B.size != k or m.grad_A.size != k:
                    raise CheckFailed(f"{where}: {m.grad_B.size} columns of B {fmt_set(m.grad_B)} and {m.grad_A.size} "
                                      f"rows of A {fmt_set(m.grad_A)} moved with the gradient, expected exactly k={k}"
                                      f"{_hint(m, k, r)}")
                if not full and (m.decay_B.size or m.decay_A.size):
                    sizes = np.concatenate([m.size_B[m.decay_B], m.size_A[m.decay_A]])
                    factors = np.concatenate([m.factor_B, m.factor_A])
                    raise CheckFailed(
                        f"{where}: besides the k={k} gradient-moved indices {fmt_set(m.grad_B)}, B columns "
                        f"{fmt_set(m.decay_B)} / A rows {fmt_set(m.decay_A)} moved slightly (at most {sizes.max():.2g} "
                        f"x the factor's largest entry, against {max(m.size_B.max(), m.size_A.max()):.2g} for the "
                        f"index set)"
                        + decay_hint(alone, float(np.median(factors))))
    return f"{len(records)} rounds: every client moved exactly k_i indices per layer"


def _reference_alone(s, rec, i, sets):
    """(task of client i alone with its index sets, its reference upload, reference result),
    checking the battery's premise that the reference reads back exactly those sets."""
    task = replace(rec.task.only_client(i), index_sets=[sets])
    upload = sketched_client_update(task, 0, sets)
    ref = reference_round(task, [upload])
    for l, (m, I) in enumerate(zip(classify_moves(s, task, RoundResult(ref)), sets)):
        if not (np.array_equal(m.grad_B, I) and np.array_equal(m.grad_A, I)):
            raise CheckInconclusive(f"battery premise failed: the reference update of client {i} with I={fmt_set(I)} "
                                    f"in layer {l} reads back as {fmt_set(m.grad_B)} / {fmt_set(m.grad_A)}; the black-box "
                                    f"reading would be unreliable here (a limitation of the battery; please report)")
    return task, upload, ref


def _region(task, sets):
    """The coordinates a client's update is compared on: its index set (scope 'selected'; movement
    outside it is index_set_size's business) or everything (scope 'full': the decay is declared)."""
    if task.optimizer_scope == "full":
        return None
    return [(I, I) for I in sets]


@check("black")
def check_update_matches_reference(impl, session=None) -> str:
    """Each client's change (alone) on its index set equals the reference update for that set, and
    the round with all clients equals the reference round for the sets they drew."""
    s = _session(impl, session)
    records = black_box_run(s)
    alone = joint = skipped = 0
    for rec in records:
        all_sets, uploads = [], []
        for i, result in enumerate(rec.singles):
            sets = rec.valid_sets(i)
            all_sets.append(sets)
            if sets is None:
                skipped += 1
                continue
            task, upload, ref = _reference_alone(s, rec, i, sets)
            uploads.append(upload)
            region = _region(task, sets)
            if relative_error(task, ref, result.layers, region) > s.tol:
                raise CheckFailed(_mismatch_alone(s, rec, i, task, ref, result.layers, sets, region))
            alone += 1
        if rec.joint is None or any(sets is None for sets in all_sets):
            continue
        task = replace(rec.task, index_sets=all_sets)
        ref = reference_round(task, uploads)
        if relative_error(task, ref, rec.joint.layers) > s.tol:
            raise CheckFailed(_mismatch_joint(s, rec, task, ref))
        joint += 1
    if alone == 0:
        raise CheckInconclusive(f"no (round, client) had a valid index set (k_i indices, the same for B and A) in "
                                f"{skipped} tries: nothing to compare with the reference (see index_set_size)")
    return (f"{alone} (round, client) updates alone and {joint} joint rounds equal the reference within {s.tol:g} "
            f"relative" + (f"; {skipped} (round, client) with invalid index sets skipped" if skipped else ""))


def _mismatch_alone(s, rec, i, task, ref, got, sets, region) -> str:
    k, r = task.budgets[0], task.rank
    worst = None
    for l, ((eB, eA), (gB, gA), (B0, A0), I) in enumerate(zip(ref, got, task.layers, sets)):
        for name, e, g, x0 in (("B", eB, gB, B0), ("A", eA, gA, A0)):
            x0 = np.asarray(x0, float)
            mask = np.ones(e.shape, bool)
            if region is not None:
                mask[:] = False
                mask[(slice(None), I) if name == "B" else (I, slice(None))] = True
            want, have = e - x0, g - x0
            err = np.where(mask, np.abs(have - want), 0.0) / max(np.max(np.abs(want[mask])), 1e-300)
            pos = np.unravel_index(np.argmax(err), err.shape)
            if worst is None or err[pos] > worst[0]:
                c = float(np.vdot(have[mask], want[mask]) / max(np.vdot(want[mask], want[mask]), 1e-300))
                worst = (err[pos], l, name, pos, want[pos], have[pos], c, I)
    _, l, name, pos, want, have, c, I = worst
    if abs(c - k / r) < 0.05 * k / r:
        hint = f" (~ k/r = {k / r:.4g}: the r/k scale is missing)"
    elif abs(c - r / k) < 0.05 * r / k:
        hint = f" (~ r/k = {r / k:.4g}: the r/k scale is applied twice)"
    else:
        hint = optimizer_hint(task, got, s.tol, region)
    return (f"round {rec.task.round_index}, client {i} (k={k}, I={fmt_set(I)}) alone, layer {l}, "
            f"{name}{list(map(int, pos))}: the reference changes it by {want:.6g}, the implementation by {have:.6g}; "
            f"over the compared coordinates the change is {c:.4g} x the reference{hint}")


def _mismatch_joint(s, rec, task, ref) -> str:
    text = compare_layers(task, ref, rec.joint.layers, s.tol, what="the reference round for the index sets the "
                                                                    "clients drew alone")
    N = task.n_clients
    # which index is worst, and is its change N/(number of selecting clients) x the reference?
    worst = (0.0, None)
    for l, ((eB, eA), (gB, gA), (B0, A0)) in enumerate(zip(ref, rec.joint.layers, task.layers)):
        for j in range(task.rank):
            e = np.concatenate([eB[:, j] - B0[:, j], eA[j, :] - A0[j, :]])
            g = np.concatenate([gB[:, j] - B0[:, j], gA[j, :] - A0[j, :]])
            err = float(np.max(np.abs(g - e)))
            if err > worst[0]:
                worst = (err, (l, j, e, g))
    hint = ""
    if worst[1] is not None:
        l, j, e, g = worst[1]
        selecting = sum(1 for sets in task.index_sets if j in sets[l])
        cj = float(np.vdot(g, e) / max(np.vdot(e, e), 1e-300))
        if 0 < selecting < N and abs(cj - N / selecting) < 1e-3 * N:
            hint = (f"; index {j} of layer {l} was selected by {selecting} of {N} clients this round and its change is "
                    f"{cj:.4g} = N/{selecting} x the reference: averaged over the selecting clients instead of N")
        elif selecting == 0:
            hint = (f"; index {j} of layer {l} was selected by no client, yet it moved: rounding noise in the average "
                    f"amplified by a server optimiser (average the clients' changes, not their models), or weight "
                    f"decay on unselected coordinates")
    row_blocks = [blocks(np.shape(B)[0], N) for B, _ in task.layers]
    col_blocks = [blocks(np.shape(A)[1], N) for _, A in task.layers]
    for i in range(N):
        read = moved_sets(s, task, rec.joint, rows=[rb[i] for rb in row_blocks], cols=[cb[i] for cb in col_blocks])
        for l, ((cols, rows), I) in enumerate(zip(read, task.index_sets[i])):
            if np.array_equal(cols, rows) and cols.size == len(I) and not np.array_equal(cols, I):
                return (f"{text}; client {i} moved indices {fmt_set(cols)} of layer {l} in the joint round but "
                        f"{fmt_set(I)} when run alone in the same round: its draws depend on its position or on a "
                        f"running random state; key them on (task.seed, task.round_index, task.client_ids[i])")
    return text + hint


@check("black")
def check_selection_frequency(impl, session=None) -> str:
    """Each index is selected with frequency k_i/r, each pair with k_i(k_i-1)/(r(r-1)), and draws
    are independent across layers and clients (joint frequency (k_i/r)(k_i'/r)).

    Exact two-sided binomial tests (rounds are independent, so every count is exactly binomial
    under a correct sampler), Bonferroni over all of them: family-wise false-alarm rate <= alpha.
    Only meaningful when every index set read back is valid: otherwise inconclusive.
    """
    s = _session(impl, session)
    records = black_box_run(s)
    R, r = len(records), records[0].task.rank
    budgets = records[0].task.budgets
    L = len(records[0].moves[0])
    invalid = [(rec.task.round_index, i, l) for rec in records for i, per in enumerate(rec.moves)
               for l, m in enumerate(per) if m.gradient_set is None or m.gradient_set.size != budgets[i]]
    if invalid:
        t, i, l = invalid[0]
        raise CheckInconclusive(f"frequencies are not meaningful because the index sets read back were invalid (not "
                                f"k_i indices shared by B and A) in {len(invalid)} of {R * len(budgets) * L} (round, "
                                f"client, layer) triples, first round {t}, client {i}, layer {l} (see index_set_size "
                                f"and index_sets_coincide)")
    member = np.zeros((len(budgets), L, R, r), dtype=int)   # member[i, l, t, j]: j in I_il in round t
    for t, rec in enumerate(records):
        for i in range(len(budgets)):
            for l in range(L):
                member[i, l, t, rec.moves[i][l].grad_B] = 1
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
