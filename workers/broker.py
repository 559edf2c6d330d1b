"""What is waiting in the broker: lead ids with a queued or unacknowledged stage message.

A lead found here is in a backlog (or held by a live worker for a retry countdown), not lost, so
the sweep leaves it alone however long it has been idle.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from workers.app import app
from workers.queues import Queue


def leads_in_broker(client: Any) -> set[int]:
    """Lead ids with a message waiting in a stage queue or held unacknowledged by a worker.

    Such a lead is in a backlog, not lost: the sweep must not send it a second chain.
    """
    raws: list[bytes] = []
    # kombu keeps one list per priority step, "name{sep}{step}" (its default sep, not ":").
    sep = app.conf.broker_transport_options.get("sep", "\x06\x16")
    for queue in Queue:
        for name in (queue.value, *(f"{queue.value}{sep}{p}" for p in range(1, 10))):
            raws.extend(client.lrange(name, 0, -1))
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        unacked_key = channel.unacked_key
    for raw in client.hvals(unacked_key):
        message = json.loads(raw)[0]
        raws.append(json.dumps(message).encode())
    found = set()
    for raw in raws:
        lead_id = _lead_of(raw)
        if lead_id is not None:
            found.add(lead_id)
    return found


def _lead_of(raw: bytes | str) -> int | None:
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        kwargs = json.loads(body)[1]
        return int(kwargs["lead_id"])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
