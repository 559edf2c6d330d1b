"""kombu's Redis transport, made to survive a Redis restart without stopping the worker.

When the broker connection drops, Celery closes the consumer's connection, and the channel's
close tries to put its unacknowledged messages back. kombu tears the connection down first, so
that step fails with ``AttributeError: 'NoneType' object has no attribute 'hostname'``, which
Celery treats as unrecoverable: the worker shuts down (seen on every redis-server restart in
``tests/faults``). Skipping the step there is safe: the messages stay in Redis's unacked set,
and ``workers/recovery.py`` puts back every message no live worker holds.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class QoS(kombu_redis.QoS):
    def restore_unacked_once(self, stderr: Any = None) -> Any:
        try:
            return super().restore_unacked_once(stderr)
        except AttributeError:  # the connection is already gone; the recovery loop restores them
            return None


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel
