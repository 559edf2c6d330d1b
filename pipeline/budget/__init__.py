"""Spend limits: calendar periods, the atomic Redis reservation store, the guard with its alert
and throttle levels, and its rows in the database (``store.py``: limits, events, ledger sums and
the queue pauses of ``queue_state``, written by throttle level 5 and ``leadpipe queues``).

Imports nothing from ``llm``, ``stages`` or ``reporting`` (prices come in as ``Decimal``).
"""
