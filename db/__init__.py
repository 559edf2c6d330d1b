"""Persistence only: typed models, session helpers, migrations. No business rules; the queries
of each capability live in its ``store`` module (``pipeline/<capability>/store.py``).
"""
