"""What crosses the wire in one round: a client's plan out, its upload back, as Flower records.

Server -> client i (one Message per participant), for every layer l:

    ArrayRecord  "fslora.factors"   "<l>.B": (m_l, k_i), "<l>.A": (k_i, n_l)        the block (B_I, A_I)
                                    ["<l>.delta": (m_l, n_l)]                     FLoRA's merged offset
                                    ["<l>.coeff", "<l>.col_mask", "<l>.row_mask", "<l>.indices"]
                                                                                  masked form only
    ConfigRecord "fslora.plan"      round, client, algorithm, coeff (one float per layer: s r/k_i),
                                    upload ("deltas" | "trained"), download-floats, broadcast-floats

so an FSLoRA client downloads k_i (m_l + n_l) floats per layer plus a constant. Client i -> server:

    ArrayRecord  "fslora.upload"    "<l>.B", "<l>.A": the change (dB, dA) of the block or, for the
                                    baselines whose server rule reads them, the trained factors
    MetricRecord "fslora.metrics"   losses (H), upload-floats, memory-floats
    ConfigRecord "fslora.reply"     round, client, algorithm (checked against the plan)

Floats travel as float64 (NumPy reference) or in the bridge model's precision: a float32 model
receives float32 blocks, which is exactly the rounding it applies when installing them, and
uploads float32 values that the server widens to float64 without loss.
"""
from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fslora_ref.algorithms import ClientPlan, Upload
from fslora_ref.lora import LayerFactors

PLAN, FACTORS, UPLOAD, METRICS, REPLY = "fslora.plan", "fslora.factors", "fslora.upload", "fslora.metrics", "fslora.reply"
TIMING = "fslora.timing"   # MetricRecord of the ClientApp's start-up and training seconds (not part of the upload)

# Which part of an Upload each server rule reads: FSLoRA and FedIT scatter the blocks' change,
# HetLoRA, FlexLoRA and FLoRA combine the trained factors. Only that part is sent; the change
# stays None on the server, so a wrong entry fails loudly instead of aggregating zeros (the
# trained factors of a change-uploading client are rebuilt, for the divergence check only).
UPLOAD_FIELD = {"fslora": "deltas", "fedit": "deltas", "hetlora": "trained", "flexlora": "trained", "flora": "trained"}


class BadReply(ValueError):
    """A reply that does not match the plan it answers (the message names client and field)."""


class BadUpdate(BadReply):
    """A reply to the right plan whose values the server refuses to aggregate: wrong shape, not a
    float array, a NaN or infinity, or a norm above the bound (the message names client and field)."""


FLOAT_KINDS = (np.dtype(np.float32), np.dtype(np.float64))


def check_update(client: int, key: str, x: np.ndarray, shape: tuple) -> None:
    """Refuse an uploaded array unless it is a finite float32 / float64 array of the expected shape.

    Parameters
    ----------
    client : int
        The client that uploaded it (named in the message).
    key : str
        The array's name in the upload record, ``"<l>.B"`` or ``"<l>.A"``.
    x : ndarray
        The array as decoded.
    shape : tuple of int
        The shape the plan implies, e.g. (m_l, k_i) for ``"<l>.B"``.

    Raises
    ------
    BadUpdate
        Naming the client and the array: another dtype, another shape, or NaN / infinite values.
    """
    if x.dtype not in FLOAT_KINDS:
        raise BadUpdate(f"client {client}: upload {key} has dtype {x.dtype}, expected float32 or float64")
    if x.shape != shape:
        raise BadUpdate(f"client {client}: upload {key} has shape {x.shape}, expected {shape}")
    bad = ~np.isfinite(x)
    if bad.any():
        kind = "NaN" if np.isnan(x).any() else "infinite"
        raise BadUpdate(f"client {client}: upload {key} has {int(bad.sum())} {kind} value(s)")


def update_norm(pairs) -> float:
    """The Euclidean norm of all uploaded arrays together, compared with ``--max-update-norm``.

    Parameters
    ----------
    pairs : list of tuple of ndarray
        ``[(B_l, A_l)]`` per layer, as uploaded.

    Returns
    -------
    float
        sqrt of the sum of every entry squared, in float64 (an overflow gives inf, never an error).

    Examples
    --------
    >>> import numpy as np
    >>> from fslora_flower.records import update_norm
    >>> update_norm([(np.array([[3.0]]), np.array([[4.0]]))])
    5.0
    """
    with np.errstate(over="ignore"):
        return float(np.sqrt(sum(float(np.sum(np.square(x))) for pair in pairs for x in pair)))


def _array(x, dtype=None) -> Array:
    x = np.asarray(x)
    return Array(np.ascontiguousarray(x if dtype is None else x.astype(dtype, copy=False)))


def plan_to_record(plan: ClientPlan, round_index: int, algorithm: str, dtype=np.float64) -> RecordDict:
    """The content of the message that hands ``plan`` to its client (layout: the module docstring).

    Parameters
    ----------
    plan : ClientPlan
        What the client starts from: per layer ``B: (m_l, k_i)``, ``A: (k_i, n_l)``, the coefficients,
        FLoRA's offset and, in the masked form, the masks and index sets.
    round_index : int
        The round t.
    algorithm : str
        The algorithm's name (sets which part of its upload the client sends, UPLOAD_FIELD).
    dtype : numpy dtype, default float64
        The dtype the factors and offsets are sent in (the model's precision); coefficients that
        differ across a layer's columns are always sent as float64.

    Returns
    -------
    flwr.app.RecordDict
        An ArrayRecord ``"fslora.factors"`` and a ConfigRecord ``"fslora.plan"``.
    """
    arrays, coeff = {}, []
    for l, f in enumerate(plan.factors):
        arrays[f"{l}.B"], arrays[f"{l}.A"] = _array(f.B, dtype), _array(f.A, dtype)
        uniform = f.coeff.size > 0 and np.all(f.coeff == f.coeff[0])
        coeff.append(float(f.coeff[0]) if uniform else float("nan"))
        if not uniform:
            arrays[f"{l}.coeff"] = _array(f.coeff, np.float64)  # s diag(S): kept exact, it scales every step
        if f.delta is not None:
            arrays[f"{l}.delta"] = _array(f.delta, dtype)
    if plan.masks is not None:
        for l, ((col, row), idx) in enumerate(zip(plan.masks, plan.indices)):
            arrays[f"{l}.col_mask"], arrays[f"{l}.row_mask"] = _array(col), _array(row)
            arrays[f"{l}.indices"] = _array(idx)
    config = ConfigRecord({"round": int(round_index), "client": int(plan.client), "algorithm": algorithm,
                           "layers": len(plan.factors), "coeff": coeff, "upload": UPLOAD_FIELD[algorithm],
                           "download-floats": int(plan.download_floats),
                           "broadcast-floats": int(plan.broadcast_floats)})
    return RecordDict({FACTORS: ArrayRecord(arrays), PLAN: config})


def record_to_plan(content: RecordDict) -> tuple[ClientPlan, dict]:
    """Read a plan message on the client: the inverse of :func:`plan_to_record`.

    Arrays are widened to float64. The client never needs the server's index sets in the
    submatrix form, so they stay None there (the masked form carries masks and indices).

    Parameters
    ----------
    content : flwr.app.RecordDict
        The message content.

    Returns
    -------
    plan : ClientPlan
        As the client's ``client_update`` needs it.
    meta : dict
        The plan's ConfigRecord (round, client, algorithm, layers, coeff, upload, download-floats,
        broadcast-floats).
    """
    meta = dict(content[PLAN])
    arrays = content[FACTORS]
    factors, masks, indices = [], [], []
    for l in range(int(meta["layers"])):
        B, A = arrays[f"{l}.B"].numpy().astype(np.float64), arrays[f"{l}.A"].numpy().astype(np.float64)
        c = meta["coeff"][l]
        coeff = arrays[f"{l}.coeff"].numpy() if f"{l}.coeff" in arrays else np.full(B.shape[1], float(c))
        delta = arrays[f"{l}.delta"].numpy().astype(np.float64) if f"{l}.delta" in arrays else None
        factors.append(LayerFactors(B, A, coeff, delta))
        if f"{l}.col_mask" in arrays:
            masks.append((arrays[f"{l}.col_mask"].numpy(), arrays[f"{l}.row_mask"].numpy()))
            indices.append(arrays[f"{l}.indices"].numpy())
    plan = ClientPlan(int(meta["client"]), factors, indices if masks else None, masks or None,
                      download_floats=int(meta["download-floats"]), broadcast_floats=int(meta["broadcast-floats"]))
    return plan, meta


def upload_to_record(upload: Upload, meta: dict, dtype=np.float64) -> RecordDict:
    """The content of a client's reply: the part of its upload the server rule reads, its metrics.

    Parameters
    ----------
    upload : Upload
        The client's result of local training.
    meta : dict
        The plan's ConfigRecord (from :func:`record_to_plan`): ``meta["upload"]`` (``"deltas"`` or
        ``"trained"``) says which pairs are sent; ``round`` and ``algorithm`` are echoed.
    dtype : numpy dtype, default float64
        The dtype the arrays are sent in; it must hold their values exactly (never rounded).

    Returns
    -------
    flwr.app.RecordDict
        An ArrayRecord ``"fslora.upload"``, a MetricRecord ``"fslora.metrics"`` and a ConfigRecord
        ``"fslora.reply"``.

    Raises
    ------
    ValueError
        If ``meta["upload"]`` is neither ``"deltas"`` nor ``"trained"``, or a value would be rounded
        in ``dtype``.
    """
    if meta["upload"] not in ("deltas", "trained"):
        raise ValueError(f"plan asks for upload {meta['upload']!r}; expected 'deltas' or 'trained'")
    pairs = getattr(upload, meta["upload"])
    arrays = {}
    for l, (B, A) in enumerate(pairs):
        for name, x in (("B", B), ("A", A)):
            sent = np.asarray(x).astype(dtype)
            if not np.array_equal(sent, x):  # never round what the server aggregates
                raise ValueError(f"client {upload.client}: {meta['upload']} of layer {l} are not exactly {np.dtype(dtype)}")
            arrays[f"{l}.{name}"] = _array(sent)
    metrics = MetricRecord({"losses": [float(v) for v in upload.losses], "upload-floats": int(upload.upload_floats),
                            "memory-floats": int(upload.memory_floats)})
    reply = ConfigRecord({"round": int(meta["round"]), "client": int(upload.client), "algorithm": meta["algorithm"]})
    return RecordDict({UPLOAD: ArrayRecord(arrays), METRICS: metrics, REPLY: reply})


def record_to_upload(content: RecordDict, plan: ClientPlan, round_index: int, algorithm: str,
                     max_norm: float | None = None) -> Upload:
    """Read a client's reply on the server, checked against the plan it answers.

    Parameters
    ----------
    content : flwr.app.RecordDict
        The reply's content.
    plan : ClientPlan
        The plan sent to that client (its shapes and index sets).
    round_index : int
        The round the reply must answer.
    algorithm : str
        The algorithm the reply must name (sets which part was uploaded, UPLOAD_FIELD).
    max_norm : float, optional
        A bound on :func:`update_norm` of everything uploaded (None: no bound).

    Returns
    -------
    Upload
        Arrays in float64. For the change-uploading rules (fslora, fedit) ``deltas`` holds the
        uploaded change (masked form: the block I only, ``(m_l, k_i)`` and ``(k_i, n_l)``) and
        ``trained`` is rebuilt (:func:`rebuilt_trained`); for the others ``trained`` holds the uploaded
        factors and ``deltas`` is None.

    Raises
    ------
    BadReply
        If the reply lacks a record or an array, answers another round, client or algorithm, or
        misreports its uploaded floats.
    BadUpdate
        If an array cannot be decoded or fails :func:`check_update`, the norm exceeds ``max_norm``,
        or the reported losses are not finite.
    """
    client = plan.client
    try:
        reply, arrays, metrics = dict(content[REPLY]), content[UPLOAD], dict(content[METRICS])
    except KeyError as exc:
        raise BadReply(f"client {client}: reply lacks the record {exc}") from None
    if (reply.get("round"), reply.get("client"), reply.get("algorithm")) != (round_index, client, algorithm):
        raise BadReply(f"client {client}: reply is for round {reply.get('round')}, client {reply.get('client')}, "
                       f"algorithm {reply.get('algorithm')!r}; expected round {round_index}, client {client}, {algorithm!r}")
    field = UPLOAD_FIELD[algorithm]
    pairs = []
    for l, f in enumerate(plan.factors):
        # the masked form uploads only the selected block of its full-size change
        expected = plan.indices[l].size if plan.masks is not None and field == "deltas" else f.B.shape[1]
        shapes = {"B": (f.B.shape[0], expected), "A": (expected, f.A.shape[1])}
        pair = []
        for name in ("B", "A"):
            key = f"{l}.{name}"
            if key not in arrays:
                raise BadReply(f"client {client}: upload lacks {key}")
            try:
                raw = arrays[key].numpy()
            except Exception as exc:   # a malformed array record: Flower's own decoding error
                raise BadUpdate(f"client {client}: upload {key} cannot be decoded ({type(exc).__name__})") from None
            check_update(client, key, raw, shapes[name])
            pair.append(raw.astype(np.float64))
        pairs.append(tuple(pair))
    if max_norm is not None:
        norm = update_norm(pairs)
        if not norm <= max_norm:
            raise BadUpdate(f"client {client}: upload norm {norm:.6g} exceeds the bound {max_norm:g}")
    floats = sum(B.size + A.size for B, A in pairs)
    if int(metrics["upload-floats"]) != floats:
        raise BadReply(f"client {client}: reports {metrics['upload-floats']} uploaded floats but sent {floats}")
    losses = [float(v) for v in metrics["losses"]]
    if not np.all(np.isfinite(losses)):
        raise BadUpdate(f"client {client}: reports non-finite local losses")
    return Upload(client, trained=pairs if field == "trained" else rebuilt_trained(plan, pairs),
                  deltas=pairs if field == "deltas" else None, upload_floats=floats,
                  memory_floats=int(metrics["memory-floats"]), losses=losses)


def rebuilt_trained(plan: ClientPlan, deltas) -> list:
    """The factors a client ended its local training with, rebuilt from its plan and uploaded change.

    Never aggregated (the rules that read the change get ``deltas``); the run loop's divergence
    check reads it to name the client whose local training blew up, as in process.

    Parameters
    ----------
    plan : ClientPlan
        The plan the client started from.
    deltas : list of tuple of ndarray
        ``[(dB_l, dA_l)]`` as uploaded: the whole change, or in the masked form the block I only,
        ``dB_l: (m_l, k_i)``, ``dA_l: (k_i, n_l)``.

    Returns
    -------
    list of tuple of ndarray
        ``[(B_l + dB_l, A_l + dA_l)]``; in the masked form only columns I of B_l and rows I of A_l
        change.
    """
    trained = []
    for l, (f, (dB, dA)) in enumerate(zip(plan.factors, deltas)):
        if plan.masks is None:
            trained.append((f.B + dB, f.A + dA))
            continue
        I = plan.indices[l]
        B, A = f.B.copy(), f.A.copy()
        B[:, I] += dB
        A[I, :] += dA
        trained.append((B, A))
    return trained
