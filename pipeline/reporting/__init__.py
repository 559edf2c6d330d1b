"""Read-only views of the ledger: the report data, reply/quality figures, the HTML page and its
SVG charts. Never writes to the database.
"""
