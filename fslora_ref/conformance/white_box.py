"""White-box checks: the battery hands the implementation the index sets and compares.

Every check takes ``(impl, session=None)``, returns a one-line account of what it verified and
raises CheckFailed with a diagnosis (client, layer, index, expected vs got) otherwise, or
CheckInconclusive when the implementation's output leaves it nothing to test (e.g. nothing
moved). Every task carries the implementation's declared optimisers (``Session.task``), and the
expected values are the reference run with those settings.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..algorithms import FedIT
from ..algorithms.protocol import ServerState
from .hints import aggregation_weights_hint, decay_hint, optimizer_hint, precision_hint
from .protocol import OracleProblem, QuadraticOracle
from .reference import average_over_clients, reference_round, task_config
from .registry import check
from .scenarios import (BUDGETS, WHITE_BOX_ROUNDS, constant_gradient_round, full_rank_round, random_white_box_round,
                        two_layer_round)
from .session import (CheckFailed, CheckInconclusive, Session, session_for, classify_moves, deltas, fmt_set, moved_sets,
                      read_uploads)

__all__ = ["reference_round", "compare_layers"]


def compare_layers(task, expected, got, tol, what="reference round") -> str | None:
    """Compare two rounds' new factors, relative to the largest expected change of each factor.

    Parameters
    ----------
    task : RoundTask
        The round (its starting factors).
    expected : list of tuple of ndarray
        The reference's ``[(B_l, A_l)]``.
    got : list of tuple of ndarray
        The implementation's.
    tol : float
        The relative tolerance.
    what : str, default "reference round"
        Names the expectation in the diagnosis.

    Returns
    -------
    str or None
        None if ``got`` equals ``expected`` within ``tol``; otherwise a diagnosis at the worst
        coordinate.
    """
    worst = None
    for l, ((eB, eA), (gB, gA), (B0, A0)) in enumerate(zip(expected, got, task.layers)):
        for name, e, g, x0, axis in (("B", eB, gB, B0, 1), ("A", eA, gA, A0, 0)):
            change = e - np.asarray(x0, float)
            scale = max(np.max(np.abs(change)), 1e-300)
            err = np.abs(g - e)
            rel = np.max(err) / scale
            if rel > tol and (worst is None or rel > worst[0]):
                pos = np.unravel_index(np.argmax(err), err.shape)
                worst = (rel, l, name, pos, change[pos], g[pos] - x0[pos], pos[axis])
    if worst is None:
        return None
    rel, l, name, pos, want, have, j = worst
    who = ""
    if task.index_sets is not None:
        sel = [int(cid) for cid, sets in zip(task.client_ids, task.index_sets) if j in sets[l]]
        who = f" (rank index {j}, selected by clients {sel} of {task.n_clients})"
    ratio = f", ratio {have / want:.4g}" if want != 0 else ""
    return (f"round {task.label!r}, layer {l}, {name}{list(map(int, pos))}{who}: {what} changes it by "
            f"{want:.6g}, the implementation by {have:.6g}{ratio}; max error {rel:.3g} x the largest change "
            f"(tolerance {tol:g} for {np.dtype(task.layers[0][0].dtype)})")


def white_box_rounds(s: Session) -> list:
    """The rounds round_matches_reference compares: the probes, then the budget's randomised scenarios."""
    fixed = [s.task(make(s.dtype)) for make in WHITE_BOX_ROUNDS]
    n = BUDGETS[s.options.budget].white_scenarios
    return fixed + [s.task(random_white_box_round(s.dtype, s.options.seed, i)) for i in range(n)]


def client_weights(task, got) -> np.ndarray | None:
    """The weights w_i with which the clients' reference changes make up ``got``'s change (least squares;
    1/N each for FSLoRA); None for a server Adam step (not linear in the changes)."""
    if task.server_optimizer == "adam" or task.n_clients < 2:
        return None
    columns = []
    for i in range(task.n_clients):
        alone = replace(task, oracles=[task.oracles[i]], budgets=(task.budgets[i],), index_sets=[task.index_sets[i]],
                        client_ids=(task.client_ids[i],), server_optimizer="average")
        columns.append(np.concatenate([np.ravel(np.asarray(X, float) - np.asarray(X0, float))
                                       for pair, pair0 in zip(reference_round(alone), task.layers)
                                       for X, X0 in zip(pair, pair0)]))
    target = np.concatenate([np.ravel(np.asarray(X, float) - np.asarray(X0, float))
                             for pair, pair0 in zip(got, task.layers) for X, X0 in zip(pair, pair0)])
    M = np.stack(columns, axis=1)
    w, *_ = np.linalg.lstsq(M, target, rcond=None)
    if np.linalg.norm(M @ w - target) > 1e-3 * max(np.linalg.norm(target), 1e-300):
        return None   # not a weighted sum of the clients' changes: the weights would explain nothing
    return w / (task.server_lr if task.server_optimizer == "sgd" else 1.0)


def round_hint(task, got, tol) -> str:
    """The most specific explanation of a round that differs from the reference."""
    w = client_weights(task, got)
    if w is not None and task.n_clients >= 2:
        uniform = bool(np.all(np.abs(w - w.mean()) <= 1e-3 * np.max(np.abs(w))))
        off_by_one = abs(w.mean() - 1.0 / (task.n_clients - 1)) <= 1e-3 / task.n_clients
        if not uniform or off_by_one:   # equal weights other than 1/(N-1): a server step size, said below
            text = aggregation_weights_hint(task, w)
            if text:
                return text
    return optimizer_hint(task, got, tol) or precision_hint(got)


@check("white")
def check_round_matches_reference(impl, session=None) -> str:
    """The new global (B, A) equals the reference round: two probe rounds (two-layer, weight decay) and
    the budget's randomised scenarios (N up to 12, r up to 32, up to 3 non-square layers, H up to 8).

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
    tasks = white_box_rounds(s)
    for task in tasks:
        got = s.run_round("white", task, key=(task.label, "all")).layers
        problem = compare_layers(task, reference_round(task), got, s.tol)
        if problem:
            raise CheckFailed(problem + round_hint(task, got, s.tol))
    shown = "; ".join(f"{t.label}: N={t.n_clients}, r={t.rank}, H={t.local_steps}, {t.n_layers} layer(s)"
                      for t in tasks[len(WHITE_BOX_ROUNDS):])
    return f"{len(tasks)} rounds equal the reference within {s.tol:g} relative ({shown})"


def _single_client_runs(s: Session, make, steps: int) -> tuple:
    """(task, [(client i alone with H = steps, its result)]): the per-client probes."""
    task = s.task(make(s.dtype))
    alone = [task.only_client(i, local_steps=steps) for i in range(task.n_clients)]
    return task, [(t, s.run_round("white", t, key=(task.label, "only", i, steps))) for i, t in enumerate(alone)]


def _multiple_of_itself(dX, X0) -> float | None:
    """c if dX = c X0 (to 1e-3 relative), else None."""
    d, x = np.ravel(dX), np.ravel(np.asarray(X0, float))
    c = float(d @ x / max(x @ x, 1e-300))
    return c if np.linalg.norm(d - c * x) <= 1e-3 * max(np.linalg.norm(d), 1e-300) else None


@check("white")
def check_untouched_outside_index_set(impl, session=None) -> str:
    """Columns of B and rows of A outside a client's index set do not move (one client, one step;
    with scope='full', they move exactly by the declared weight decay).

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
    n = 0
    for make in WHITE_BOX_ROUNDS:
        task, runs = _single_client_runs(s, make, 1)
        for t, result in runs:
            k = t.budgets[0]
            expected = deltas(t, type(result)(reference_round(t)))
            for l, (I, (dB, dA), (eB, eA), (B0, A0)) in enumerate(zip(t.index_sets[0], deltas(t, result), expected,
                                                                       t.layers)):
                if max(np.max(np.abs(dB)), np.max(np.abs(dA))) <= s.moved_tol * max(np.max(np.abs(B0)),
                                                                                     np.max(np.abs(A0))):
                    continue   # the client moved nothing at all: this pair has nothing to test
                n += 1
                for what, dX, eX, X0, axis in (("B columns", dB, eB, B0, 1), ("A rows", dA, eA, A0, 0)):
                    thr = s.moved_tol * max(np.max(np.abs(X0)), 1e-30)
                    off = np.max(np.abs(dX - eX), axis=1 - axis, initial=0.0) > thr
                    extra = np.setdiff1d(np.flatnonzero(off), I)
                    if extra.size:
                        j = int(extra[0])
                        dj = np.take(dX, j, axis=axis)
                        c = _multiple_of_itself(dj, np.take(X0, j, axis=axis))
                        sig = (decay_hint(t, c) if c is not None else
                               "; the change is not a multiple of the coordinate (a gradient step on an unselected "
                               "coordinate)")
                        raise CheckFailed(
                            f"round {task.label!r}, client {t.client_ids[0]} alone (k={k}, I={fmt_set(I)}), layer {l}: "
                            f"{what} {fmt_set(extra)} moved though not in I (index {j}: max |change| "
                            f"{np.max(np.abs(dj)):.3g}, expected {np.max(np.abs(np.take(eX, j, axis=axis))):.3g}){sig}")
    if n == 0:
        raise CheckInconclusive("no client moved anything in one step alone: nothing to check (see "
                                "round_matches_reference)")
    return f"{n} (client, layer) pairs moved only inside their index set"


@check("white")
def check_sketch_fixed_within_round(impl, session=None) -> str:
    """The index set stays the same across a round's local steps (moved set after H=4 == after H=1).

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
    task, one = _single_client_runs(s, two_layer_round, 1)
    _, four = _single_client_runs(s, two_layer_round, 4)
    n = 0
    for (t1, r1), (t4, r4) in zip(one, four):
        k = t1.budgets[0]
        if k == t1.rank:
            continue
        for l, (m1, m4) in enumerate(zip(classify_moves(s, t1, r1), classify_moves(s, t4, r4))):
            if m1.gradient_set is None or m1.gradient_set.size != k:
                continue   # after one step the client did not move one set of k indices: nothing to compare
            n += 1
            if not (np.array_equal(m1.grad_B, m4.grad_B) and np.array_equal(m1.grad_A, m4.grad_A)):
                raise CheckFailed(
                    f"round {task.label!r}, client {t1.client_ids[0]} alone (k={k}, "
                    f"I={fmt_set(t1.index_sets[0][l])}), layer {l}: after 1 local step B columns {fmt_set(m1.grad_B)} / "
                    f"A rows {fmt_set(m1.grad_A)} had moved, after 4 steps B columns {fmt_set(m4.grad_B)} / A rows "
                    f"{fmt_set(m4.grad_A)}: the index set changes between the local steps of a round (it must be "
                    f"drawn once per round)")
    if n == 0:
        raise CheckInconclusive("after one local step no client had moved one set of exactly k_i indices (B columns "
                                "= A rows), so there is no index set whose persistence could be checked (see "
                                "untouched_outside_index_set)")
    return f"{n} (client, layer) pairs kept one index set over 4 local steps"


def _client_block_changes(s, t, result) -> list:
    """[(dB_I, dA_I)] per layer: the client's own change on its index set (before any server step),
    from its uploads if it exposes them, else undone from the global change."""
    I_sets = t.index_sets[0]
    uploads = read_uploads(result, t)
    if uploads is not None:
        out = []
        for l, ((dB, dA), I, (B0, A0)) in enumerate(zip(uploads[0], I_sets, t.layers)):
            if dB.shape == B0.shape and len(I) != t.rank:   # a full-size upload: its block at I
                dB, dA = dB[:, I], dA[I, :]
            if dB.shape != (B0.shape[0], len(I)) or dA.shape != (len(I), A0.shape[1]):
                raise CheckFailed(f"client {t.client_ids[0]} alone, layer {l}: upload blocks {dB.shape}, {dA.shape}; "
                                  f"expected {(B0.shape[0], len(I))}, {(len(I), A0.shape[1])}")
            out.append((dB, dA))
        return out
    if t.server_optimizer == "adam":
        raise CheckInconclusive("with a server Adam step a client's own change cannot be recovered from the global "
                                "result (Adam's first step is about +-server_lr whatever the change): return "
                                "RoundResult(layers, uploads) to let this check run")
    undo = t.server_lr if t.server_optimizer == "sgd" else 1.0
    return [(dB[:, I] / undo, dA[I, :] / undo) for (dB, dA), I in zip(deltas(t, result), I_sets)]


def _adam_probe(task):
    """``task`` with each client's constant gradient rescaled so that |s (r/k) grad| ~ eps: there,
    Adam's first step lr g/(|g|+eps) still depends on the gradient's scale (far above eps it is
    lr sign(g) and would hide a missing or doubled r/k)."""
    oracles = []
    for i, o in enumerate(task.oracles):
        c = task.lora_scaling * task.rank / task.budgets[i]
        mags = []
        for C, (B0, A0), I in zip(o.linear, task.layers, task.index_sets[i]):
            B0, A0 = np.asarray(B0, float), np.asarray(A0, float)
            mags += [np.median(np.abs(c * C @ A0[I].T)), np.median(np.abs(c * B0[:, I].T @ C))]
        f = task.eps / float(np.exp(np.mean(np.log(mags))))
        oracles.append(QuadraticOracle([f * C for C in o.linear]))
    return replace(task, oracles=oracles, label="constant_gradient_adam_probe")


def _fitted_scale(t, got, unit, X_I, adam: bool) -> tuple:
    """(c, residual): got ~ one step with the gradient c * unit (unit = s G A_I^T or s B_I^T G)."""
    y = -got / t.lr - t.weight_decay * X_I          # SGD: c unit; AdamW: g/(|g| + eps) with g = c unit
    if not adam:
        c = float(np.vdot(y, unit) / np.vdot(unit, unit))
        return c, float(np.linalg.norm(y - c * unit) / max(np.linalg.norm(y), 1e-300))
    good = (np.abs(y) > 0.02) & (np.abs(y) < 0.98) & (np.abs(unit) > 0)
    if not np.any(good):
        return 0.0, np.inf
    g = t.eps * y[good] / (1 - np.abs(y[good]))
    ratios = g / unit[good]
    c = float(np.median(ratios))
    return c, float(np.max(np.abs(ratios - c)) / max(abs(c), 1e-300))


@check("white")
def check_scale_applied_once(impl, session=None) -> str:
    """One step with a constant gradient G moves B_I by -lr s (r/k) G A_I^T and A_I by -lr s (r/k) B_I^T G
    (for an AdamW client: the first Adam step of that gradient, probed where it depends on its scale).

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
    task = s.task(constant_gradient_round(s.dtype))
    adam = task.client_optimizer == "adamw"
    if adam:
        task = _adam_probe(task)
    found = []
    for i in range(task.n_clients):
        k, r = task.budgets[i], task.rank
        if k == r:
            continue
        t = task.only_client(i)
        result = s.run_round("white", t, key=(task.label, "only", i, 1))
        changes = _client_block_changes(s, t, result)
        G = t.oracles[0].linear   # constant-gradient oracles: grad = C
        for l, ((dB_I, dA_I), (B0, A0), I) in enumerate(zip(changes, t.layers, t.index_sets[0])):
            B_I, A_I = np.asarray(B0, float)[:, I], np.asarray(A0, float)[I, :]
            unit = {"B": t.lora_scaling * G[l] @ A_I.T, "A": t.lora_scaling * B_I.T @ G[l]}
            fit = {"B": _fitted_scale(t, dB_I, unit["B"], B_I, adam), "A": _fitted_scale(t, dA_I, unit["A"], A_I, adam)}
            c = {f: v[0] for f, v in fit.items()}
            resid = {f: v[1] for f, v in fit.items()}
            ok = all(abs(c[f] - r / k) <= 10 * s.tol * r / k and resid[f] <= 10 * s.tol for f in c)
            found.append((ok, t.client_ids[0], k, l, c, resid, t, result))
    for ok, cid, k, l, c, resid, t, result in found:
        if not ok:
            r = task.rank
            still = all(np.max(np.abs(dX)) <= s.moved_tol * max(np.max(np.abs(X0)), 1e-30)
                        for pair, pair0 in zip(deltas(t, result), t.layers) for dX, X0 in zip(pair, pair0))
            why = ("nothing moved at all in this round of one client (N = 1): the single client was not trained, or its "
                   "change was dropped (a loop over range(N - 1), a client slice [:-1]?)" if still else
                   "the given index set did not move: the implementation does not use the index set it was given"
                   if all(abs(v) < 0.01 for v in c.values()) else
                   "only one factor moved on I: B and A do not use the same index set"
                   if min(abs(v) for v in c.values()) < 0.01 else
                   "the r/k scale is missing" if all(abs(v - 1) < 0.01 for v in c.values()) else
                   "the r/k scale is applied twice ((r/k)^2, once per factor)"
                   if all(abs(v - (r / k) ** 2) < 0.01 * (r / k) ** 2 for v in c.values()) else
                   "the step is not a multiple of the sketched gradient" + optimizer_hint(t, result.layers, s.tol)
                   if max(resid.values()) > 0.01 else "the scale is wrong")
            how = ("the gradient scale that the first AdamW step implies" if adam else
                   "the unscaled step -lr s G A_I^T / -lr s B_I^T G")
            raise CheckFailed(
                f"round {task.label!r}, client {cid} alone (k={k}, r={r}: r/k = {r / k:g}), layer {l}: one step moved "
                f"B_I by {c['B']:.6g} x and A_I by {c['A']:.6g} x {how} (residuals {resid['B']:.2g}, "
                f"{resid['A']:.2g}); expected {r / k:g} for each: {why}")
    how = " (AdamW: gradients probed near eps)" if adam else ""
    return f"{len(found)} (client, layer) pairs stepped with exactly r/k once{how}"


def _attributable(task, moves, l, j) -> tuple:
    """(selecting clients, attributable): index j of layer l is attributable when some selecting
    client moved it with a gradient-like change alone and no other client did. moves: [client][layer] Moves."""
    sel = [i for i in range(task.n_clients) if j in task.index_sets[i][l]]
    movers = [i for i, per in enumerate(moves) if j in per[l].grad_B or j in per[l].grad_A]
    return sel, bool(movers) and set(movers) <= set(sel)


@check("white")
def check_aggregation_divides_by_n(impl, session=None) -> str:
    """The round's change is (1/N) x the sum of the clients' changes (each client run alone), per index
    (with a server Adam step: the declared step on (1/N) x the sum of the clients' uploads).

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
    task, runs = _single_client_runs(s, two_layer_round, 1)
    joint_task = replace(task, local_steps=1)
    joint_result = s.run_round("white", joint_task, key=(task.label, "all", 1))
    if task.server_optimizer == "adam":
        return _aggregation_from_uploads(s, joint_task, joint_result)
    joint = deltas(joint_task, joint_result)
    singles = [deltas(t, r) for t, r in runs]
    moves = [classify_moves(s, t, r) for t, r in runs]
    N, n = task.n_clients, 0
    wrong = []   # (divisor, selecting clients, text) of every pair that is not averaged over N
    for l, (dB, dA) in enumerate(joint):
        sum_B = sum(d[l][0] for d in singles)
        sum_A = sum(d[l][1] for d in singles)
        scale = max(np.max(np.abs(sum_B)), np.max(np.abs(sum_A)), 1e-300)
        for j in range(task.rank):
            S = np.concatenate([sum_B[:, j], sum_A[j, :]])
            o = np.concatenate([dB[:, j], dA[j, :]])
            if np.max(np.abs(S)) <= s.tol * scale:
                continue
            sel_pos, ok = _attributable(task, moves, l, j)
            if not ok:
                continue   # moved by clients that did not select it (or as a rescaling): not attributable
            sel = [int(task.client_ids[i]) for i in sel_pos]
            n += 1
            d = float(np.vdot(S, S) / np.vdot(S, o)) if np.vdot(S, o) != 0 else np.inf
            if not (abs(d - N) <= 10 * s.tol * N and np.max(np.abs(o - S / N)) <= 10 * s.tol * scale):
                wrong.append((d, sel, f"round {task.label!r} (H=1), layer {l}, rank index {j} (selected by clients "
                                      f"{sel}, {len(sel)} of {N}): the round's change is the sum of the clients' "
                                      f"single-client changes / {d:.6g}, expected / {N} (N, all clients)"))
    if wrong:
        d, sel, text = wrong[0]
        if N > 1 and all(abs(w[0] - (N - 1)) < 1e-3 for w in wrong):
            why = " = N - 1 for every index: an off-by-one in the average (not a server learning rate)"
        elif all(abs(w[0] - len(w[1])) < 1e-3 * N for w in wrong):
            why = " = the number of clients that selected it: averaging over the selecting clients instead of N"
        else:
            why = round_hint(joint_task, joint_result.layers, s.tol)
        raise CheckFailed(text + why)
    if n == 0:
        raise CheckInconclusive("no rank index was moved, with a gradient-like change, only by clients that selected "
                                "it (each client run alone): the clients' changes cannot be attributed, so there is "
                                "nothing to average (see untouched_outside_index_set and round_matches_reference)")
    return f"{n} (layer, index) pairs average the clients' changes over N = {N}"


def _aggregation_from_uploads(s, task, result) -> str:
    if result.uploads is None:
        raise CheckInconclusive("with a server Adam step the round is not linear in the clients' changes, so they "
                                "cannot be read from single-client rounds: return RoundResult(layers, uploads) to let "
                                "this check compare the server step with the declared one on (1/N) sum of uploads")
    uploads = read_uploads(result, task)
    for i, per in enumerate(uploads):
        for l, ((dB, dA), I, (B0, A0)) in enumerate(zip(per, task.index_sets[i], task.layers)):
            if dB.shape[0] != B0.shape[0] or dB.shape[1] not in (len(I), task.rank) or dA.shape != (dB.shape[1], A0.shape[1]):
                raise CheckFailed(f"round {task.label!r}, client {task.client_ids[i]}, layer {l}: upload blocks "
                                  f"{dB.shape}, {dA.shape} fit neither the index set nor the full factors")
    expected = average_over_clients(task, task.index_sets, uploads)
    problem = compare_layers(task, expected, result.layers, s.tol, what="the declared server step on (1/N) sum of "
                                                                           "the uploads")
    if problem:
        raise CheckFailed(problem)
    return f"the server step on (1/N) x the sum of the {task.n_clients} clients' uploads matches the declared Adam step"


@check("white")
def check_full_rank_is_fedavg(impl, session=None) -> str:
    """With every k_i = r the round equals FedAvg of full-rank LoRA (the reference FedIT round).

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
    task = s.task(full_rank_round(s.dtype))
    problem = OracleProblem(task.base_weights, task.oracles)
    config = task_config(task)
    state = ServerState([(np.asarray(B, float), np.asarray(A, float)) for B, A in task.layers])
    fedit = FedIT()
    plans = fedit.configure_round(state, problem, config, 0, list(range(task.n_clients)))
    uploads = [fedit.client_update(p, problem, config, 0) for p in plans]
    expected = fedit.aggregate(state, plans, uploads, config).layers
    got = s.run_round("white", task, key=(task.label, "all")).layers
    problem_text = compare_layers(task, expected, got, s.tol, what="FedAvg (FedIT)")
    if problem_text:
        raise CheckFailed(problem_text + round_hint(task, got, s.tol))
    return f"k_i = r for all {task.n_clients} clients: equals FedAvg within {s.tol:g}"


@check("white")
def check_upload_size(impl, session=None) -> str:
    """Each client uploads k_i (m + n) floats per layer (its uploads, or the coordinates it moved).

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
    task = s.task(two_layer_round(s.dtype))
    result = s.run_round("white", task, key=(task.label, "all"))
    n = 0
    uploads = read_uploads(result, task)
    if uploads is not None:
        for i, up in enumerate(uploads):
            for l, ((dB, dA), (B0, A0)) in enumerate(zip(up, task.layers)):
                k, (m, r), nn = task.budgets[i], B0.shape, A0.shape[1]
                size = dB.size + dA.size
                n += 1
                if dB.shape != (m, k) or dA.shape != (k, nn):
                    raise CheckFailed(
                        f"round {task.label!r}, client {task.client_ids[i]} (k={k}), layer {l}: uploads B block "
                        f"{dB.shape} and A block {dA.shape} = {size} floats; FSLoRA sends (m, k) and (k, n) "
                        f"= k(m+n) = {k}*({m}+{nn}) = {k * (m + nn)} floats")
        return f"{n} (client, layer) uploads of k_i (m + n) floats"
    _, runs = _single_client_runs(s, two_layer_round, 1)
    for t, r in runs:
        for l, ((cols, rows), (B0, A0)) in enumerate(zip(moved_sets(s, t, r), t.layers)):
            k, m, nn = t.budgets[0], B0.shape[0], A0.shape[1]
            need = cols.size * m + rows.size * nn
            if need == 0:
                continue
            n += 1
            if need > k * (m + nn):
                raise CheckFailed(
                    f"round {task.label!r}, client {t.client_ids[0]} alone (k={k}), layer {l}: moved {cols.size} columns "
                    f"of B and {rows.size} rows of A, so it must upload at least {need} floats; FSLoRA sends "
                    f"k(m+n) = {k * (m + nn)}")
    if n == 0:
        raise CheckInconclusive("no uploads exposed and no client moved anything alone: no upload size to infer")
    return f"no uploads exposed; {n} (client, layer) pairs moved at most k_i (m + n) floats"
