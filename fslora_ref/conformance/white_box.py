"""White-box checks: the battery hands the implementation the index sets and compares.

Every check takes ``(impl, session=None)``, returns a one-line account of what it verified and
raises CheckFailed with a diagnosis (client, layer, index, expected vs got) otherwise.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..algorithms import FedIT
from ..algorithms.protocol import ServerState
from .protocol import OracleProblem
from .reference import average_over_clients, sketched_client_update, task_config
from .registry import check
from .scenarios import WHITE_BOX_ROUNDS, constant_gradient_round, full_rank_round, two_layer_round
from .session import CheckFailed, Session, deltas, fmt_set, moved_sets


def _session(impl, session):
    return session if session is not None else Session(impl)


def reference_round(task) -> list:
    """The reference's new global [(B, A)] for a white-box ``task``."""
    uploads = [sketched_client_update(task, i, task.index_sets[i]) for i in range(task.n_clients)]
    return average_over_clients(task, task.index_sets, uploads)


def compare_layers(task, expected, got, tol, what="reference round") -> str | None:
    """None if ``got`` equals ``expected`` within ``tol`` relative to the largest expected change
    of each factor; otherwise a diagnosis at the worst coordinate."""
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


@check("white")
def check_round_matches_reference(impl, session=None) -> str:
    """The new global (B, A) equals the reference round (two_layer and weight-decay rounds)."""
    s = _session(impl, session)
    for make in WHITE_BOX_ROUNDS:
        task = make(s.dtype)
        problem = compare_layers(task, reference_round(task), s.run_round("white", task, key=(task.label, "all")).layers,
                                 s.tol)
        if problem:
            raise CheckFailed(problem)
    return f"{len(WHITE_BOX_ROUNDS)} rounds equal the reference within {s.tol:g} relative"


def _single_client_runs(s: Session, make, steps: int) -> tuple:
    """(task, [(client i alone with H = steps, its result)]): the per-client probes."""
    task = make(s.dtype)
    alone = [task.only_client(i, local_steps=steps) for i in range(task.n_clients)]
    return task, [(t, s.run_round("white", t, key=(task.label, "only", i, steps))) for i, t in enumerate(alone)]


def _decay_signature(task, dX, X0) -> str:
    """Why an out-of-set column (axis=1) / row (axis=0) moved: a multiple of itself is weight decay."""
    d, x = np.ravel(dX), np.ravel(np.asarray(X0, float))
    c = float(d @ x / max(x @ x, 1e-300))
    resid = np.linalg.norm(d - c * x) / max(np.linalg.norm(d), 1e-300)
    if resid < 1e-3 and task.weight_decay > 0:
        steps = 1 - (1 - task.lr * task.weight_decay) ** task.local_steps
        return (f"; it moved by {c:.4g} x its own value (-(1-(1-lr wd)^H) = {-steps:.4g}): weight decay applied to "
                f"unselected coordinates")
    return "; the change is not a multiple of the coordinate (a gradient step on an unselected coordinate)"


@check("white")
def check_untouched_outside_index_set(impl, session=None) -> str:
    """Columns of B and rows of A outside a client's index set do not move (one client, one step)."""
    s = _session(impl, session)
    n = 0
    for make in WHITE_BOX_ROUNDS:
        task, runs = _single_client_runs(s, make, 1)
        for t, result in runs:
            k = t.budgets[0]
            for l, ((cols, rows), I, (dB, dA), (B0, A0)) in enumerate(zip(moved_sets(s, t, result), t.index_sets[0],
                                                                           deltas(t, result), t.layers)):
                n += 1
                for what, moved, dX, X0, axis in (("B columns", cols, dB, B0, 1), ("A rows", rows, dA, A0, 0)):
                    extra = np.setdiff1d(moved, I)
                    if extra.size:
                        j = int(extra[0])
                        sig = _decay_signature(t, np.take(dX, j, axis=axis), np.take(X0, j, axis=axis))
                        raise CheckFailed(
                            f"round {task.label!r}, client {t.client_ids[0]} alone (k={k}, I={fmt_set(I)}), layer {l}: "
                            f"{what} {fmt_set(extra)} moved though not in I (index {j}: max |change| "
                            f"{np.max(np.abs(np.take(dX, j, axis=axis))):.3g}){sig}")
    return f"{n} (client, layer) pairs moved only inside their index set"


@check("white")
def check_sketch_fixed_within_round(impl, session=None) -> str:
    """The index set stays the same across a round's local steps (moved set after H=4 == after H=1)."""
    s = _session(impl, session)
    task, one = _single_client_runs(s, two_layer_round, 1)
    _, four = _single_client_runs(s, two_layer_round, 4)
    n = 0
    for (t1, r1), (t4, r4) in zip(one, four):
        if t1.budgets[0] == t1.rank:
            continue
        for l, ((c1, w1), (c4, w4)) in enumerate(zip(moved_sets(s, t1, r1), moved_sets(s, t4, r4))):
            n += 1
            if not (np.array_equal(c1, c4) and np.array_equal(w1, w4)):
                raise CheckFailed(
                    f"round {task.label!r}, client {t1.client_ids[0]} alone (k={t1.budgets[0]}, "
                    f"I={fmt_set(t1.index_sets[0][l])}), layer {l}: after 1 local step B columns {fmt_set(c1)} / A rows "
                    f"{fmt_set(w1)} had moved, after 4 steps B columns {fmt_set(c4)} / A rows {fmt_set(w4)}: "
                    f"the index set changes between the local steps of a round (it must be drawn once per round)")
    return f"{n} (client, layer) pairs kept one index set over 4 local steps"


@check("white")
def check_scale_applied_once(impl, session=None) -> str:
    """One step with a constant gradient G moves B_I by -lr s (r/k) G A_I^T and A_I by -lr s (r/k) B_I^T G."""
    s = _session(impl, session)
    task = constant_gradient_round(s.dtype)
    found = []
    for i in range(task.n_clients):
        k, r = task.budgets[i], task.rank
        if k == r:
            continue
        t = task.only_client(i)
        result = s.run_round("white", t, key=(task.label, "only", i, 1))
        G = t.oracles[0].linear   # constant-gradient oracles: grad = C
        for l, ((dB, dA), (B0, A0), I) in enumerate(zip(deltas(t, result), t.layers, t.index_sets[0])):
            B_I, A_I = np.asarray(B0, float)[:, I], np.asarray(A0, float)[I, :]
            unit = {"B": -t.lr * t.lora_scaling * G[l] @ A_I.T, "A": -t.lr * t.lora_scaling * B_I.T @ G[l]}
            got = {"B": dB[:, I], "A": dA[I, :]}
            c = {f: float(np.vdot(got[f], unit[f]) / np.vdot(unit[f], unit[f])) for f in unit}
            resid = {f: np.linalg.norm(got[f] - c[f] * unit[f]) / max(np.linalg.norm(got[f]), 1e-300) for f in unit}
            ok = all(abs(c[f] - r / k) <= 10 * s.tol * r / k and resid[f] <= 10 * s.tol for f in c)
            found.append((ok, t.client_ids[0], k, l, c, resid))
    for ok, cid, k, l, c, resid in found:
        if not ok:
            r = task.rank
            why = ("the given index set did not move: the implementation does not use the index set it was given"
                   if all(abs(v) < 0.01 for v in c.values()) else
                   "only one factor moved on I: B and A do not use the same index set"
                   if min(abs(v) for v in c.values()) < 0.01 else
                   "the r/k scale is missing" if all(abs(v - 1) < 0.01 for v in c.values()) else
                   "the r/k scale is applied twice ((r/k)^2, once per factor)"
                   if all(abs(v - (r / k) ** 2) < 0.01 * (r / k) ** 2 for v in c.values()) else
                   "the step is not a multiple of the sketched gradient" if max(resid.values()) > 0.01 else
                   "the scale is wrong")
            raise CheckFailed(
                f"round {task.label!r}, client {cid} alone (k={k}, r={r}: r/k = {r / k:g}), layer {l}: one step moved "
                f"B_I by {c['B']:.6g} x and A_I by {c['A']:.6g} x the unscaled step -lr s G A_I^T / -lr s B_I^T G "
                f"(residuals {resid['B']:.2g}, {resid['A']:.2g}); expected {r / k:g} for each: {why}")
    return f"{len(found)} (client, layer) pairs stepped with exactly r/k once"


@check("white")
def check_aggregation_divides_by_n(impl, session=None) -> str:
    """The round's change is (1/N) x the sum of the clients' changes (each client run alone), per index."""
    s = _session(impl, session)
    task, runs = _single_client_runs(s, two_layer_round, 1)
    joint_task = replace(two_layer_round(s.dtype), local_steps=1)
    joint = deltas(joint_task, s.run_round("white", joint_task, key=(task.label, "all", 1)))
    singles = [deltas(t, r) for t, r in runs]
    N, n = task.n_clients, 0
    for l, (dB, dA) in enumerate(joint):
        sum_B = sum(d[l][0] for d in singles)
        sum_A = sum(d[l][1] for d in singles)
        scale = max(np.max(np.abs(sum_B)), np.max(np.abs(sum_A)), 1e-300)
        for j in range(task.rank):
            S = np.concatenate([sum_B[:, j], sum_A[j, :]])
            o = np.concatenate([dB[:, j], dA[j, :]])
            sel = [int(task.client_ids[i]) for i in range(N) if j in task.index_sets[i][l]]
            if np.max(np.abs(S)) <= s.tol * scale:
                continue
            n += 1
            d = float(np.vdot(S, S) / np.vdot(S, o)) if np.vdot(S, o) != 0 else np.inf
            if not (abs(d - N) <= 10 * s.tol * N and np.max(np.abs(o - S / N)) <= 10 * s.tol * scale):
                why = (" = the number of clients that selected it: averaging over the selecting clients instead of N"
                       if abs(d - len(sel)) < 1e-3 * N else "")
                raise CheckFailed(
                    f"round {task.label!r} (H=1), layer {l}, rank index {j} (selected by clients {sel}, {len(sel)} of "
                    f"{N}): the round's change is the sum of the clients' single-client changes / {d:.6g}, "
                    f"expected / {N} (N, all clients){why}")
    return f"{n} (layer, index) pairs average the clients' changes over N = {N}"


@check("white")
def check_full_rank_is_fedavg(impl, session=None) -> str:
    """With every k_i = r the round equals FedAvg of full-rank LoRA (the reference FedIT round)."""
    s = _session(impl, session)
    task = full_rank_round(s.dtype)
    problem = OracleProblem(task.base_weights, task.oracles)
    config = task_config(task)
    state = ServerState([(np.asarray(B, float), np.asarray(A, float)) for B, A in task.layers])
    fedit = FedIT()
    plans = fedit.configure_round(state, problem, config, 0, list(range(task.n_clients)))
    uploads = [fedit.client_update(p, problem, config, 0) for p in plans]
    expected = fedit.aggregate(state, plans, uploads, config).layers
    problem_text = compare_layers(task, expected, s.run_round("white", task, key=(task.label, "all")).layers, s.tol,
                                  what="FedAvg (FedIT)")
    if problem_text:
        raise CheckFailed(problem_text)
    return f"k_i = r for all {task.n_clients} clients: equals FedAvg within {s.tol:g}"


@check("white")
def check_upload_size(impl, session=None) -> str:
    """Each client uploads k_i (m + n) floats per layer (its uploads, or the coordinates it moved)."""
    s = _session(impl, session)
    task = two_layer_round(s.dtype)
    result = s.run_round("white", task, key=(task.label, "all"))
    n = 0
    if result.uploads is not None:
        if len(result.uploads) != task.n_clients:
            raise CheckFailed(f"round {task.label!r}: {len(result.uploads)} uploads for {task.n_clients} clients")
        for i, up in enumerate(result.uploads):
            for l, ((dB, dA), (B0, A0)) in enumerate(zip(up, task.layers)):
                k, (m, r), nn = task.budgets[i], B0.shape, A0.shape[1]
                size = np.size(dB) + np.size(dA)
                n += 1
                if np.shape(dB) != (m, k) or np.shape(dA) != (k, nn):
                    raise CheckFailed(
                        f"round {task.label!r}, client {task.client_ids[i]} (k={k}), layer {l}: uploads B block "
                        f"{np.shape(dB)} and A block {np.shape(dA)} = {size} floats; FSLoRA sends (m, k) and (k, n) "
                        f"= k(m+n) = {k}*({m}+{nn}) = {k * (m + nn)} floats")
        return f"{n} (client, layer) uploads of k_i (m + n) floats"
    _, runs = _single_client_runs(s, two_layer_round, 1)
    for t, r in runs:
        for l, ((cols, rows), (B0, A0)) in enumerate(zip(moved_sets(s, t, r), t.layers)):
            k, m, nn = t.budgets[0], B0.shape[0], A0.shape[1]
            need = cols.size * m + rows.size * nn
            n += 1
            if need > k * (m + nn):
                raise CheckFailed(
                    f"round {task.label!r}, client {t.client_ids[0]} alone (k={k}), layer {l}: moved {cols.size} columns "
                    f"of B and {rows.size} rows of A, so it must upload at least {need} floats; FSLoRA sends "
                    f"k(m+n) = {k * (m + nn)}")
    return f"no uploads exposed; {n} (client, layer) pairs moved at most k_i (m + n) floats"
