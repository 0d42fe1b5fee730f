"""Sending messages and collecting replies with a deadline, and what they weigh on the wire.

``exchange`` is Grid.send_and_receive with a shorter poll (Flower's sleeps 3 s between pulls;
the SuperNodes already poll every 3 s, so the server need not add as much again) and with the
replies returned however few arrived by the deadline.
"""
from __future__ import annotations

import time

from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects


def exchange(grid, messages, timeout: float, poll: float = 0.5) -> tuple[list, set]:
    """Push ``messages``, then pull replies until all arrived or ``timeout`` seconds passed.

    Unlike ``Grid.send_and_receive`` it polls every ``poll`` seconds (not 3 s) and returns whatever
    arrived by the deadline instead of waiting for the rest.

    Parameters
    ----------
    grid : flwr.server.Grid
        The ServerApp's grid.
    messages : iterable of flwr.common.Message
        One message per destination node.
    timeout : float
        Seconds to wait for replies after pushing.
    poll : float, default 0.5
        Seconds between pulls.

    Returns
    -------
    replies : list of flwr.common.Message
        The replies that arrived, error replies included, in arrival order.
    refused : set of int
        Destination node ids of the messages the SuperLink refused (it no longer lists their node).
    """
    messages = list(messages)
    if not messages:
        return [], set()
    ids = list(grid.push_messages(messages))
    refused = {m.metadata.dst_node_id for m, mid in zip(messages, ids) if not mid}
    pending = {mid for mid in ids if mid}
    deadline = time.monotonic() + timeout
    replies = []
    while pending:
        got = list(grid.pull_messages(pending))
        replies += got
        pending -= {m.metadata.reply_to_message_id for m in got}
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
    return replies, refused


def payload_bytes(message) -> int:
    """What ``message`` weighs on the wire: the bytes of the objects Flower stores and transfers for it.

    Its serialised records, arrays and array chunks, each distinct object once (as the SuperLink
    stores them and a node pulls or pushes them), without HTTP framing.

    Parameters
    ----------
    message : flwr.common.Message
        A message (its content is walked, not sent).

    Returns
    -------
    int
        Bytes.
    """
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())
