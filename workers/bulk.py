"""Sending many lead chains at once: Celery's chain messages, built in bulk and pipelined.

``chain(...).apply_async()`` costs about a millisecond of Python and a Redis round trip per lead
(signatures cloned, options merged, the message routed, declared and serialised one at a time).
A batch of 100,000 leads sends the same six-task chain 100,000 times with two values changed, so
:class:`ChainSender` builds the first task's message once per priority in Celery's protocol 2
(the other five tasks in the message's ``chain``, as ``chain.apply_async`` sends them) and per
lead fills in the lead id and fresh task and delivery ids. Messages go out with one ``LPUSH``
per queue and priority for every ``PUBLISH_BATCH`` leads, in a Redis pipeline.

What it keeps: the headers ``before_task_publish`` receivers add (the deployment id), the
priority queues kombu's Redis transport uses, and FIFO order within a priority.
What it leaves out: Celery's ``task-sent`` event per message (Flower still sees each task when a
worker receives it). ``tests/integration/test_streaming_enqueue.py`` compares a message built
here with the one ``chain.apply_async`` publishes, field by field.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from typing import Any

from celery.signals import before_task_publish
from celery.utils.nodenames import anon_nodename

from workers.app import app

PUBLISH_BATCH = 1000
"""Leads whose messages go to Redis in one pipeline round trip."""
_SENTINEL = -727_272_727  # stands for the lead id in the body template


def _signature(task: Any, lead_id: int, run_id: str, priority: int) -> dict[str, Any]:
    return dict(task.si(lead_id=lead_id, run_id=run_id).set(priority=priority))


class ChainSender:
    """Publishes ``tasks[0]`` then ``tasks[1:]`` for many leads of one run, pipelined."""

    def __init__(self, tasks: tuple[Any, ...], run_id: str) -> None:
        self._tasks = tasks
        self._run_id = run_id
        self._first = tasks[0]
        self._queue = str(app.amqp.router.route({}, self._first.name)["queue"].name)
        self._origin = anon_nodename()
        self._reply_to = app.thread_oid
        self._bodies: dict[int, list[str]] = {}
        self._headers: dict[int, dict[str, Any]] = {}

    def _body_parts(self, priority: int) -> list[str]:
        """The JSON body split around the lead id (it appears once per task)."""
        if priority not in self._bodies:
            chain = [
                _signature(task, _SENTINEL, self._run_id, priority)
                for task in reversed(self._tasks[1:])
            ]
            body = [
                [],
                {"lead_id": _SENTINEL, "run_id": self._run_id},
                {"callbacks": None, "errbacks": None, "chain": chain, "chord": None},
            ]
            self._bodies[priority] = json.dumps(body).split(str(_SENTINEL))
        return self._bodies[priority]

    def _base_headers(self, priority: int) -> dict[str, Any]:
        """Celery's headers for this task, with what ``before_task_publish`` receivers add."""
        if priority not in self._headers:
            headers: dict[str, Any] = {
                "lang": "py",
                "task": self._first.name,
                "id": None,
                "shadow": None,
                "eta": None,
                "expires": None,
                "group": None,
                "group_index": None,
                "retries": 0,
                "timelimit": [None, None],
                "root_id": None,
                "parent_id": None,
                "argsrepr": "()",
                "kwargsrepr": None,
                "origin": self._origin,
                "ignore_result": True,
                "replaced_task_nesting": 0,
                "stamped_headers": None,
                "stamps": {},
            }
            before_task_publish.send(
                sender=self._first.name,
                body=None,
                exchange="",
                routing_key=self._queue,
                headers=headers,
                properties={"priority": priority},
                declare=[],
                retry_policy=None,
            )
            self._headers[priority] = headers
        return self._headers[priority]

    def message(self, lead_id: int, priority: int) -> tuple[int, str]:
        """``(priority, serialised message)`` of one lead's first task, as kombu stores it."""
        task_id = str(uuid.uuid4())
        body = str(lead_id).join(self._body_parts(priority))
        headers = dict(self._base_headers(priority))
        headers["id"] = headers["root_id"] = task_id
        headers["kwargsrepr"] = repr({"lead_id": lead_id, "run_id": self._run_id})
        envelope = {
            "body": base64.b64encode(body.encode()).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "correlation_id": task_id,
                "reply_to": self._reply_to,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": self._queue},
                "priority": priority,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
        return priority, json.dumps(envelope)

    def send(self, leads: Iterable[tuple[int, int]], *, batch: int = PUBLISH_BATCH) -> int:
        """Publish one chain per ``(lead_id, priority)``; returns how many were sent.

        Raises the broker's error (nothing of the failing pipeline is known to be sent; earlier
        pipelines were).
        """
        sent = 0
        with app.connection_for_write() as conn:
            channel: Any = conn.default_channel
            client = channel.client
            pending: dict[str, list[str]] = {}
            count = 0
            for lead_id, priority in leads:
                pri, raw = self.message(lead_id, priority)
                pending.setdefault(channel._q_for_pri(self._queue, pri), []).append(raw)
                count += 1
                if count >= batch:
                    sent += self._flush(client, pending)
                    pending, count = {}, 0
            sent += self._flush(client, pending)
        return sent

    @staticmethod
    def _flush(client: Any, pending: dict[str, list[str]]) -> int:
        if not pending:
            return 0
        with client.pipeline(transaction=False) as pipe:
            for key, raws in pending.items():
                pipe.lpush(key, *raws)  # LPUSH a b c: BRPOP takes a first, as one LPUSH each
            pipe.execute()
        return sum(len(raws) for raws in pending.values())
