"""Read-only views of the ledger: the report data, reply/quality figures, the HTML page and its
SVG charts. Never writes to the database; every query it makes lives in ``store.py`` (budget rows
come from ``pipeline.budget.store``). Imports no stage, campaign or web code.
"""
