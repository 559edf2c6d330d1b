"""The only path to a model: gateway, answer contracts (``contracts.py``), routing table
(``routing.toml``), prices, response cache, circuit breaker, prompts and the HTTP providers.

May import ``budget`` (reservations) and ``db``; only ``llm/providers`` imports httpx.
"""
