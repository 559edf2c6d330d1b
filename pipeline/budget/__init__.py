"""Spend limits: calendar periods, the atomic Redis reservation store, the guard with its alert
and throttle levels, and the budget rows in the database.

Imports nothing from ``llm``, ``stages`` or ``reporting`` (prices come in as ``Decimal``).
"""
