"""Black-box checks: the implementation draws its own sketches; the battery reads them back.

The battery runs randomised scenarios (``scenarios.BlackBoxSpec``: the statistical one, whose
rounds are set for the frequency test's power, and ``Budget.black_scenarios`` others). A scenario
is one round (start, oracles) run with round_index 0, 1, ... with all N clients together, and in
its first ``alone_rounds`` rounds also once per client alone (``task.only_client(i)``, N = 1).

``black_box_round`` (scenarios.py) gives client i gradients supported on its own block of rows
R_i of B and columns C_i of A, so in the joint round that block is moved by client i alone: its
change there is client i's change / N, and its index set can be read off it
(``RoundRecord.joint_moves``). Independence and uniformity of the draws are judged from those
joint rounds' blocks, and the joint round is compared with the reference round for the sets read
there. So any valid way of drawing -- per-client keyed generators, or one server generator drawing
for the clients in order -- conforms: nothing ties a client's draws alone to its draws in the
joint round. Run alone, a client's change is its own (no average, no other client): each moved B
column (A row) is "gradient-like" (the sketched gradient step) or "decay-like" (a multiple of its
own value: weight decay, a rescaling) -- ``session.classify_moves``; the index_set checks read it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil

import numpy as np

from .hints import aggregation_weights_hint, decay_hint, optimizer_hint, precision_hint, relative_error
from .protocol import RoundResult
from .reference import reference_round, sketched_client_update
from .registry import check
from .scenarios import (BUDGETS, LAYOUTS, BlackBoxSpec, black_box_task, blocks, extra_black_box_spec,
                        statistical_black_box_spec)
from .session import (CheckFailed, CheckInconclusive, Moves, Session, _split, session_for, classify_moves, deltas, fmt_set,
                      safe_getattr)
from .stats import binomial_pvalues, detectable_bias, trials_for_bias
from .white_box import compare_layers

POWER = 0.9   # the probability with which the stated smallest inclusion bias is detected
ROUND_OFFSET = 1_000_000   # scenario e runs round_index e * ROUND_OFFSET + t: distinct rounds of one training


@dataclass
class RoundRecord:
    """One black-box round of a scenario, as read back.

    Parameters
    ----------
    task : RoundTask
        The joint task of this round.
    singles : list of RoundResult
        Per client, the round of the client alone ([] after the scenario's alone_rounds).
    moves : list of list
        ``[client][layer]`` Moves of the client alone.
    joint : RoundResult
        The round of all clients together.
    joint_moves : list of list
        ``[client][layer]`` Moves read on client i's block of the joint round.
    compare : bool
        Whether this round is compared with the reference.
    """

    task: object      # the joint task of this round
    singles: list     # [client] RoundResult of the client alone ([] after the scenario's alone_rounds)
    moves: list       # [client][layer] Moves of the client alone
    joint: object     # RoundResult of all clients together
    joint_moves: list  # [client][layer] Moves read on client i's block of the joint round
    compare: bool     # whether the joint round is compared with the reference round

    @property
    def sets(self) -> list:
        """[client][layer] = (gradient-like B columns, gradient-like A rows), read alone."""
        return [[(m.grad_B, m.grad_A) for m in per] for per in self.moves]

    @property
    def deltas(self) -> list:
        """[(dB, dA)] global change of the joint round per layer."""
        return deltas(self.task, self.joint)

    def valid_sets(self, i) -> list | None:
        """Client i's index set per layer read alone, if it moved exactly k_i indices, the same for B and A.

        Parameters
        ----------
        i : int
            The client's position.

        Returns
        -------
        list of ndarray or None
        """
        return _valid(self.moves[i], self.task.budgets[i])

    def joint_sets(self, i) -> list | None:
        """Client i's index set per layer read on its block of the joint round.

        Parameters
        ----------
        i : int
            The client's position.

        Returns
        -------
        list of ndarray or None
            None if not valid.
        """
        return _valid(self.joint_moves[i], self.task.budgets[i])


def _valid(moves, k) -> list | None:
    sets = [m.gradient_set for m in moves]
    return sets if all(I is not None and I.size == k for I in sets) else None


@dataclass
class ScenarioRun:
    """The rounds of one black-box scenario.

    Parameters
    ----------
    spec : BlackBoxSpec
        The scenario.
    records : list of RoundRecord
        Its rounds.
    joint_readable : bool, default True
        False: sets were read alone (weight decay with a server Adam step).
    """

    spec: BlackBoxSpec
    records: list
    joint_readable: bool = True   # False: sets were read alone (weight decay with a server Adam step)


def _readable(task) -> None:
    if task.optimizer_scope == "full" and task.weight_decay > 0 and task.server_optimizer == "adam":
        raise CheckInconclusive(
            "declared scope='full' with weight decay and a server Adam step: every coordinate then moves by about "
            "+-server_lr (Adam's first step on the decayed unselected ones too), so no index set can be read back "
            "from the result; use white-box mode (white_box_round) for this combination")


def layout_of(s: Session) -> str:
    """The layer layout the implementation's model can take ('free', or 'llama' for the PEFT adapter's
    one-layer Llama: q_proj and v_proj share their input size); the battery chooses the sizes.

    Parameters
    ----------
    s : Session
        The implementation's session.

    Returns
    -------
    str
    """
    layout = safe_getattr(s.impl, "layer_layout") or "free"
    if layout not in LAYOUTS:
        raise TypeError(f"impl.layer_layout must be one of {list(LAYOUTS)}, got {layout!r}")
    return layout


def frequency_test_counts(spec: BlackBoxSpec) -> int:
    """How many pooled inclusion tests a scenario contributes: r per distinct budget 0 < k < r.

    Parameters
    ----------
    spec : BlackBoxSpec
        The scenario.

    Returns
    -------
    int
    """
    return spec.rank * len({k for k in spec.budgets if 0 < k < spec.rank})


def mid_budgets(spec: BlackBoxSpec) -> list:
    """The budgets the power target is stated for: k/r in [1/4, 3/4].

    Parameters
    ----------
    spec : BlackBoxSpec
        The scenario.

    Returns
    -------
    list of int
    """
    return sorted({k for k in spec.budgets if spec.rank <= 4 * k <= 3 * spec.rank})


def statistical_rounds(spec: BlackBoxSpec, threshold: float, target: float, cap: int) -> int:
    """Joint rounds so that the pooled inclusion test of every budget in ``mid_budgets`` detects a relative
    inclusion bias ``target`` with probability >= POWER at ``threshold`` (exact, confirmed), within [20, cap].

    Parameters
    ----------
    spec : BlackBoxSpec
        The scenario.
    threshold : float
        The per-test level.
    target : float
        The relative inclusion bias to detect.
    cap : int
        The most rounds.

    Returns
    -------
    int
    """
    L, r = len(spec.shapes), spec.rank
    need = {k: spec.budgets.count(k) * L for k in mid_budgets(spec)}
    R = max([20] + [ceil(trials_for_bias(k / r, threshold, target, POWER) / n) for k, n in need.items()])
    while R < cap and any(detectable_bias(R * n, k / r, threshold, POWER) > target for k, n in need.items()):
        R = ceil(R * 1.05)
    return min(R, cap)


def black_box_plan(s: Session) -> tuple:
    """The scenarios of this run, rounds decided (cached per session).

    Parameters
    ----------
    s : Session
        The implementation's session.

    Returns
    -------
    specs : list of BlackBoxSpec
    threshold : float
        The pooled-inclusion tests' level.
    """
    def compute():
        budget = BUDGETS[s.options.budget]
        layout = layout_of(s)
        stat = statistical_black_box_spec(s.options.seed, layout)
        extras = [extra_black_box_spec(s.options.seed, e, budget.extra_rounds, budget.alone_rounds, layout)
                  for e in range(1, budget.black_scenarios + 1)]
        n_pooled = sum(frequency_test_counts(sp) for sp in [stat] + extras)
        threshold = s.options.alpha / 2 / max(1, n_pooled)
        rounds = s.options.rounds or statistical_rounds(stat, threshold, budget.target_bias, budget.max_rounds)
        stat = replace(stat, rounds=rounds, alone_rounds=min(budget.alone_rounds, rounds))
        return [stat] + extras, threshold
    return s.memo("black_box_plan", compute)


def read_blocks(s: Session, task, result) -> list:
    """[client][layer] Moves of the joint ``result`` read on each client's block (rows R_i of B, columns C_i of A).

    A block has few rows, so telling a gradient step from a multiple of the start (``_split``) would
    misfire by chance; a client's set is what moved on its block, unless the declared optimiser decays
    the unselected coordinates (scope 'full' with weight decay): then only its gradient-like moves.

    Parameters
    ----------
    s : Session
        The implementation's session.
    task : RoundTask
        The joint round.
    result : RoundResult
        Its result.

    Returns
    -------
    list of list
        ``[client][layer]`` Moves.
    """
    N = task.n_clients
    # weight decay moves whole columns of B / rows of A (every block) by a multiple of their start: only a
    # gradient-like change is the client's own then (a server Adam step hides that: see joint_readable)
    by_gradient = task.weight_decay > 0
    out = [[] for _ in range(N)]
    for (dB, dA), (B0, A0) in zip(deltas(task, result), task.layers):
        B0, A0 = np.asarray(B0, float), np.asarray(A0, float)
        rows, cols = blocks(B0.shape[0], N), blocks(A0.shape[1], N)
        for i in range(N):
            gB, dBj, fB, sB = _split(s, dB[rows[i], :], B0[rows[i], :], 1)
            gA, dAj, fA, sA = _split(s, dA[:, cols[i]], A0[:, cols[i]], 0)
            if not by_gradient:
                gB, gA = np.union1d(gB, dBj), np.union1d(gA, dAj)
                dBj, dAj, fB, fA = dBj[:0], dAj[:0], fB[:0], fA[:0]
            out[i].append(Moves(gB, gA, dBj, dAj, fB, fA, sB, sA))
    return out


def joint_readable(task) -> bool:
    """Whether a client's set can be read on its block of the joint round: not when weight decay (which
    reaches every block) meets a server Adam step (which turns any change into a step of about +-server_lr).

    Parameters
    ----------
    task : RoundTask

    Returns
    -------
    bool
    """
    return not (task.weight_decay > 0 and task.server_optimizer == "adam")


def black_box_run(s: Session) -> list:
    """The implementation's black-box rounds (cached per session, failures too).

    Parameters
    ----------
    s : Session
        The implementation's session.

    Returns
    -------
    list of ScenarioRun
    """
    def compute():
        specs, _ = black_box_plan(s)
        compared = BUDGETS[s.options.budget].compared_rounds
        runs = []
        for e, spec in enumerate(specs):
            base = s.task(black_box_task(s.dtype, spec, s.options.seed))
            _readable(base)
            readable = joint_readable(base)
            records = []
            for t in range(spec.rounds):
                task = replace(base, round_index=e * ROUND_OFFSET + t)
                joint = s.run_round("black", task)
                singles, moves = [], []
                if t < spec.alone_rounds or not readable:
                    alone = [task.only_client(i) for i in range(task.n_clients)]
                    singles = [s.run_round("black", a) for a in alone]
                    moves = [classify_moves(s, a, r) for a, r in zip(alone, singles)]
                # unreadable joint blocks: the sets drawn alone stand in (and cross-client tests are skipped)
                records.append(RoundRecord(task, singles, moves, joint, read_blocks(s, task, joint) if readable
                                           else moves, t < compared))
            runs.append(ScenarioRun(spec, records, readable))
        return runs
    return s.memo("black_box_run", compute)


def _alone_records(runs) -> list:
    return [rec for run in runs for rec in run.records if rec.singles]


def _coverage(runs) -> str:
    return "; ".join(run.spec.describe() for run in runs)


def _hint(m, k, r, result=None) -> str:
    """Why a client moved the wrong number of indices with its gradient (m: its Moves in one layer;
    result: the RoundResult it came from, to recognise half-precision rounding)."""
    n = m.grad_B.size
    half = precision_hint(result.layers) if result is not None and n != k else ""
    if half:
        return half
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
    """In every round the B columns and A rows a client moved (alone) in a layer are the same index set.

    Parameters
    ----------
    impl : object
        The implementation under test.
    session : Session, optional
        The rounds shared by the checks, with the per-call time limit (default: a new one).

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis.
    """
    s = session_for(impl, session)
    records = _alone_records(black_box_run(s))
    triples = [(rec.task, i, l, m.grad_B, m.grad_A) for rec in records for i, per in enumerate(rec.moves)
               for l, m in enumerate(per) if m.grad_B.size or m.grad_A.size]
    if not triples:
        raise CheckInconclusive("no client moved any coordinate with a gradient-like change: no index sets to compare")
    bad = [tr for tr in triples if not np.array_equal(tr[3], tr[4])]
    if bad:
        task, i, l, cols, rows = bad[0]
        raise CheckFailed(f"{len(bad)} of {len(triples)} (round, client, layer) triples differ; first: {task.label} "
                          f"round {task.round_index}, client {i} (k={task.budgets[i]}, r={task.rank}) alone, layer {l}: "
                          f"B columns {fmt_set(cols)} moved but A rows {fmt_set(rows)}: B and A do not share one index "
                          f"set (independent sketches for B and A?)")
    return f"{len(records)} rounds with every client alone: B and A index sets coincide ({len(triples)} triples)"


@check("black")
def check_index_set_size(impl, session=None) -> str:
    """Each client (alone) moves exactly k_i columns of B and k_i rows of A per layer with its gradient,
    and nothing else (unless the declared scope='full' decays the others).

    Parameters
    ----------
    impl : object
        The implementation under test.
    session : Session, optional
        The rounds shared by the checks, with the per-call time limit (default: a new one).

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis.
    """
    s = session_for(impl, session)
    records = _alone_records(black_box_run(s))
    for rec in records:
        r = rec.task.rank
        full = rec.task.optimizer_scope == "full"
        for i, per in enumerate(rec.moves):
            k = rec.task.budgets[i]
            alone = rec.task.only_client(i)
            for l, m in enumerate(per):
                where = f"{rec.task.label} round {rec.task.round_index}, client {i} (k={k}, r={r}) alone, layer {l}"
                if m.grad_B.size != k or m.grad_A.size != k:
                    raise CheckFailed(f"{where}: {m.grad_B.size} columns of B {fmt_set(m.grad_B)} and {m.grad_A.size} "
                                      f"rows of A {fmt_set(m.grad_A)} moved with the gradient, expected exactly k={k}"
                                      f"{_hint(m, k, r, rec.singles[i])}")
                if not full and (m.decay_B.size or m.decay_A.size):
                    sizes = np.concatenate([m.size_B[m.decay_B], m.size_A[m.decay_A]])
                    factors = np.concatenate([m.factor_B, m.factor_A])
                    raise CheckFailed(
                        f"{where}: besides the k={k} gradient-moved indices {fmt_set(m.grad_B)}, B columns "
                        f"{fmt_set(m.decay_B)} / A rows {fmt_set(m.decay_A)} moved slightly (at most {sizes.max():.2g} "
                        f"x the factor's largest entry, against {max(m.size_B.max(), m.size_A.max()):.2g} for the "
                        f"index set)"
                        + decay_hint(alone, float(np.median(factors))))
    return f"{len(records)} rounds with every client alone: every client moved exactly k_i indices per layer"


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
    the round with all clients equals the reference round for the sets read on the clients' blocks.

    Parameters
    ----------
    impl : object
        The implementation under test.
    session : Session, optional
        The rounds shared by the checks, with the per-call time limit (default: a new one).

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis.
    """
    s = session_for(impl, session)
    runs = black_box_run(s)
    alone = joint = skipped = joint_skipped = 0
    for run in runs:
        for rec in run.records:
            for i, result in enumerate(rec.singles):
                sets = rec.valid_sets(i)
                if sets is None:
                    skipped += 1
                    continue
                task, upload, ref = _reference_alone(s, rec, i, sets)
                region = _region(task, sets)
                if relative_error(task, ref, result.layers, region) > s.tol:
                    raise CheckFailed(_mismatch_alone(s, rec, i, task, ref, result.layers, sets, region))
                alone += 1
            if not rec.compare:
                continue
            all_sets = [rec.joint_sets(i) for i in range(rec.task.n_clients)]
            if any(sets is None for sets in all_sets):
                joint_skipped += 1
                continue
            task = replace(rec.task, index_sets=all_sets)
            uploads = [sketched_client_update(task, i, sets) for i, sets in enumerate(all_sets)]
            ref = reference_round(task, uploads)
            if relative_error(task, ref, rec.joint.layers) > s.tol:
                raise CheckFailed(_mismatch_joint(s, rec, task, ref))
            joint += 1
    if alone == 0 or joint == 0:
        raise CheckInconclusive(
            f"nothing to compare with the reference: {alone} (round, client) runs alone ({skipped} without a valid index "
            f"set) and {joint} joint rounds ({joint_skipped} where some client's block showed no valid index set: k_i "
            f"indices, the same for B and A) could be compared (see index_set_size)")
    return (f"{alone} (round, client) updates alone and {joint} joint rounds (N up to "
            f"{max(run.spec.n_clients for run in runs)}, r in {sorted({run.spec.rank for run in runs})}) equal the "
            f"reference within {s.tol:g} relative"
            + (f"; {skipped} alone / {joint_skipped} joint with invalid index sets skipped"
               if skipped or joint_skipped else ""))


def _factor_ratio(e, g, x0, mask) -> float:
    want, have = (e - x0)[mask], (g - x0)[mask]
    return float(np.vdot(have, want) / max(np.vdot(want, want), 1e-300))


def _mismatch_alone(s, rec, i, task, ref, got, sets, region) -> str:
    k, r = task.budgets[0], task.rank
    worst = None
    ratios = {"B": [], "A": []}
    for l, ((eB, eA), (gB, gA), (B0, A0), I) in enumerate(zip(ref, got, task.layers, sets)):
        for name, e, g, x0 in (("B", eB, gB, B0), ("A", eA, gA, A0)):
            x0 = np.asarray(x0, float)
            mask = np.ones(e.shape, bool)
            if region is not None:
                mask[:] = False
                mask[(slice(None), I) if name == "B" else (I, slice(None))] = True
            want, have = e - x0, g - x0
            ratios[name].append(_factor_ratio(e, g, x0, mask))
            err = np.where(mask, np.abs(have - want), 0.0) / max(np.max(np.abs(want[mask])), 1e-300)
            pos = np.unravel_index(np.argmax(err), err.shape)
            if worst is None or err[pos] > worst[0]:
                c = float(np.vdot(have[mask], want[mask]) / max(np.vdot(want[mask], want[mask]), 1e-300))
                worst = (err[pos], l, name, pos, want[pos], have[pos], c, I)
    _, l, name, pos, want, have, c, I = worst
    cB, cA = float(np.median(ratios["B"])), float(np.median(ratios["A"]))
    near = lambda x, y: abs(x - y) < 0.05 * abs(y)   # noqa: E731
    half = precision_hint(got)
    if half:
        hint = half
    elif task.client_optimizer == "adamw" and k < r and ((near(cA, k / r) and near(cB, 1.0)) or
                                                       (near(cB, k / r) and near(cA, 1.0))):
        moved, kept = ("A (PEFT's lora_B)", "B (lora_A)") if near(cA, k / r) else ("B (PEFT's lora_A)", "A (lora_B)")
        hint = (f" (factor {moved} moves {min(cA, cB):.4g} ~ k/r = {k / r:.4g} x the reference, {kept} matches: with an "
                f"AdamW client that is the r/k folded into one factor's weights (training r/k x the factor, e.g. the "
                f"sketch applied as S^2 or stored in the parameter): Adam's step does not grow with the gradient, so "
                f"the stored factor moves k/r as far; not a missing r/k, which would scale both factors)")
    elif k < r and near(c, k / r):
        hint = f" (~ k/r = {k / r:.4g}: the r/k scale is missing)"
    elif k < r and near(c, r / k):
        hint = f" (~ r/k = {r / k:.4g}: the r/k scale is applied twice)"
    else:
        hint = optimizer_hint(task, got, s.tol, region)
    return (f"{rec.task.label} round {rec.task.round_index}, client {i} (k={k}, r={r}, I={fmt_set(I)}) alone, layer {l}, "
            f"{name}{list(map(int, pos))}: the reference changes it by {want:.6g}, the implementation by {have:.6g}; "
            f"over the compared coordinates the change is {c:.4g} x the reference{hint}")


def _mismatch_joint(s, rec, task, ref) -> str:
    text = compare_layers(task, ref, rec.joint.layers, s.tol, what="the reference round for the index sets read on "
                                                                    "the clients' blocks")
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
    if worst[1] is not None:
        l, j, e, g = worst[1]
        selecting = sum(1 for sets in task.index_sets if j in sets[l])
        cj = float(np.vdot(g, e) / max(np.vdot(e, e), 1e-300))
        if 0 < selecting < N and abs(cj - N / selecting) < 1e-3 * N:
            return (f"{text}; index {j} of layer {l} was selected by {selecting} of {N} clients this round and its "
                    f"change is {cj:.4g} = N/{selecting} x the reference: averaged over the selecting clients instead "
                    f"of N")
        if selecting == 0:
            return (f"{text}; index {j} of layer {l} was selected by no client, yet it moved: rounding noise in the "
                    f"average amplified by a server optimiser (average the clients' changes, not their models), or "
                    f"weight decay on unselected coordinates")
    # each client's block holds its own change / N: how much of it made it into the round?
    uploads = [sketched_client_update(task, i, sets) for i, sets in enumerate(task.index_sets)]
    weights = []
    for i in range(N):
        got_i = _block_change(task, rec.joint.layers, i)
        want_i = _block_change(task, ref, i)
        weights.append(float(np.vdot(got_i, want_i) / max(np.vdot(want_i, want_i), 1e-300)) / N)
    return text + aggregation_weights_hint(task, weights, uploads)


def _block_change(task, layers, i) -> np.ndarray:
    N = task.n_clients
    out = []
    for (B, A), (B0, A0) in zip(layers, task.layers):
        rows, cols = blocks(np.shape(B0)[0], N)[i], blocks(np.shape(A0)[1], N)[i]
        out += [np.ravel((np.asarray(B) - B0)[rows, :]), np.ravel((np.asarray(A) - A0)[:, cols])]
    return np.concatenate(out)


def _frequency_tests(run: ScenarioRun) -> tuple:
    """(pooled inclusion tests, other tests) of one scenario: each a tuple (p-values array, counts array,
    trials, probability, describe(flat index) -> str, formula)."""
    spec, records = run.spec, run.records
    R, r, L, budgets = len(records), spec.rank, len(spec.shapes), spec.budgets
    N = len(budgets)
    member = np.zeros((N, L, R, r), dtype=np.int64)   # member[i, l, t, j]: j in client i's set of layer l in round t
    for t, rec in enumerate(records):
        for i in range(N):
            for l in range(L):
                member[i, l, t, rec.joint_moves[i][l].grad_B] = 1
    pooled, other = [], []
    where = spec.label

    def add(into, counts, trials, prob, what, formula):
        counts = np.asarray(counts).ravel()
        into.append((binomial_pvalues(int(trials), float(prob))[counts], counts, trials, prob, what, formula))

    random_clients = [i for i in range(N) if 0 < budgets[i] < r]
    for k in sorted({budgets[i] for i in random_clients}):
        group = [i for i in random_clients if budgets[i] == k]
        T = len(group) * L * R
        add(pooled, member[group].sum(axis=(0, 1, 2)), T, k / r,
            lambda j, k=k, n=len(group): f"{where} (r={r}): index {j} was selected by the {n} client(s) with k={k}, "
                                         f"pooled over layers and rounds,", "k/r")
        if k >= 2:
            iu = np.triu_indices(r, 1)
            pairs = sum(member[i, l].T @ member[i, l] for i in group for l in range(L))[iu]
            add(other, pairs, T, k * (k - 1) / (r * (r - 1)),
                lambda x, k=k, iu=iu: f"{where} (r={r}, k={k}): indices ({iu[0][x]}, {iu[1][x]}) were selected together "
                                      f"(pooled over clients and layers)", "k(k-1)/(r(r-1))")
        for l in range(L):
            for l2 in range(l + 1, L):
                both = sum(member[i, l].T @ member[i, l2] for i in group)
                add(other, both, len(group) * R, (k / r) ** 2,
                    lambda x, k=k, l=l, l2=l2: f"{where} (r={r}, k={k}): index {x // r} of layer {l} and index {x % r} "
                                               f"of layer {l2} were selected together by one client (sketches not "
                                               f"independent across layers?)", "(k/r)^2")
    for i in random_clients:
        for l in range(L):
            add(other, member[i, l].sum(axis=0), R, budgets[i] / r,
                lambda j, i=i, l=l: f"{where}: client {i} (k={budgets[i]}, r={r}), layer {l}: index {j} was selected",
                "k/r")
    by_budgets = {}
    if not run.joint_readable:
        random_clients = []   # sets read alone: nothing ties two clients' draws to one round
    for a_pos, i in enumerate(random_clients):
        for i2 in random_clients[a_pos + 1:]:
            a, b = (i, i2) if budgets[i] <= budgets[i2] else (i2, i)
            by_budgets.setdefault((budgets[a], budgets[b]), []).append((a, b))
    for (ka, kb), pairs in sorted(by_budgets.items()):
        both = sum(member[a, l].T @ member[b, l] for a, b in pairs for l in range(L))
        add(other, both, len(pairs) * L * R, (ka / r) * (kb / r),
            lambda x, ka=ka, kb=kb, n=len(pairs): f"{where} (r={r}): index {x // r} of a client with k={ka} and index "
                                                  f"{x % r} of another client with k={kb} were selected together "
                                                  f"(pooled over {n} client pair(s) and the layers; sketches not "
                                                  f"independent across clients?)", "(k_i/r)(k_i'/r)")
    return pooled, other


@check("black")
def check_selection_frequency(impl, session=None) -> str:
    """Each index is selected with frequency k_i/r, each pair with k_i(k_i-1)/(r(r-1)), and draws
    are independent across layers and clients (joint frequency (k_i/r)(k_i'/r)), read on the clients'
    blocks of the joint rounds.

    Exact two-sided binomial tests (rounds are independent, so every count is exactly binomial
    under a correct sampler), Bonferroni: alpha/2 over the pooled inclusion tests (the clients
    sharing a budget and the layers pooled: their power is stated), alpha/2 over the rest.
    Only meaningful when every index set read back is valid: otherwise inconclusive.

    Parameters
    ----------
    impl : object
        The implementation under test.
    session : Session, optional
        The rounds shared by the checks, with the per-call time limit (default: a new one).

    Returns
    -------
    str
        What was verified.

    Raises
    ------
    CheckFailed
        With the diagnosis.
    """
    s = session_for(impl, session)
    runs = black_box_run(s)
    _, pooled_threshold = black_box_plan(s)
    invalid = [(run.spec.label, rec.task.round_index, i) for run in runs for rec in run.records
               for i in range(rec.task.n_clients) if rec.joint_sets(i) is None]
    if invalid:
        label, t, i = invalid[0]
        total = sum(len(run.records) * run.spec.n_clients for run in runs)
        raise CheckInconclusive(f"frequencies are not meaningful because the index sets read on the clients' blocks of "
                                f"the joint rounds were invalid (not k_i indices shared by B and A) for {len(invalid)} "
                                f"of {total} (round, client) pairs, first {label} round {t}, client {i} (see "
                                f"index_set_size and index_sets_coincide)")
    pooled, other = [], []
    for run in runs:
        p, o = _frequency_tests(run)
        pooled += p
        other += o
    n_other = sum(t[0].size for t in other)
    other_threshold = s.options.alpha / 2 / max(1, n_other)
    n_pooled = sum(t[0].size for t in pooled)
    worst = []
    for tests, threshold in ((pooled, pooled_threshold), (other, other_threshold)):
        found = None
        for pvals, counts, trials, prob, what, formula in tests:
            x = int(np.argmin(pvals))
            ratio = pvals[x] / threshold
            if found is None or ratio < found[0]:
                found = (ratio, pvals[x], threshold, what(x), int(counts[x]), trials, prob, formula)
        if found is not None:
            worst.append(found)
    # a biased inclusion also skews every joint frequency of that index: name the inclusion first
    ratio, p, threshold, what, c, trials, prob, formula = (worst[0] if worst[0][0] < 1 else
                                                           min(worst, key=lambda w: w[0]))
    power = _power(s, runs, pooled_threshold)
    if ratio < 1:
        raise CheckFailed(f"{what} in {c} of {trials} draws, expected {trials * prob:.1f} ({formula} = {prob:.4g}); "
                          f"exact binomial p = {p:.3g} < {threshold:.3g} (alpha = {s.options.alpha:g}, Bonferroni over "
                          f"{n_pooled} pooled inclusion tests and {n_other} others)")
    unread = [run.spec.label for run in runs if not run.joint_readable]
    skipped = (f"; not tested: independence across clients in {unread} (weight decay with a server Adam step: the "
               f"joint round's blocks cannot be read, so the sets drawn alone were used)" if unread else "")
    return (f"{n_pooled + n_other} exact frequency tests over {len(runs)} scenarios "
            f"({sum(len(run.records) for run in runs)} joint rounds); smallest p relative to its threshold: {ratio:.3g} "
            f"(p = {p:.3g}); power: {power}{skipped}")


def _pct(bias: float) -> str:
    return f"{bias:.0%}" if np.isfinite(bias) else "(none up to 100%)"


def _power(s, runs, threshold) -> str:
    """'detects an inclusion bias >= 14% at k=4 of r=16, ...' for the statistical scenario (others in short)."""
    s.power.setdefault("selection_frequency", {})
    parts = []
    for run in runs:
        spec, R, L = run.spec, len(run.records), len(run.spec.shapes)
        found = {}
        for k in sorted({k for k in spec.budgets if 0 < k < spec.rank}):
            found[k] = detectable_bias(R * spec.budgets.count(k) * L, k / spec.rank, threshold, POWER)
        s.power["selection_frequency"][spec.label] = {
            "rank": spec.rank, "joint_rounds": R, "threshold": threshold, "power": POWER,
            "smallest_detectable_inclusion_bias": {str(k): (None if not np.isfinite(v) else round(v, 4))
                                                   for k, v in found.items()}}
        if spec.statistical:
            mids = mid_budgets(spec)
            weak = [k for k in found if not np.isfinite(found[k])]
            parts.append(f"{spec.label} ({R} joint rounds, r={spec.rank}) detects an inclusion bias >= "
                         + ", ".join(f"{_pct(found[k])} at k={k}" for k in found if np.isfinite(found[k]))
                         + (f" (k={weak}: too few draws for any bias up to 100%)" if weak else "")
                         + (f" (target {BUDGETS[s.options.budget].target_bias:.0%} for k/r in [1/4, 3/4]: "
                            f"k in {mids})" if mids and not s.options.rounds else ""))
        elif found:
            best = min(found.values())
            parts.append(f"{spec.label} ({R} rounds, r={spec.rank}) >= {best:.0%} at best" if np.isfinite(best)
                         else f"{spec.label} ({R} rounds, r={spec.rank}): too few draws to detect any bias <= 100%")
    return "; ".join(parts) + (f" (each with probability >= {POWER:.0%}, pooled over the clients sharing k and the "
                               f"layers)")
