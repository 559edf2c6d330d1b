"""Reading CRM exports: CSV/JSONL parsing, field normalisers, row-level rejects and de-duplication.

Pure: imports nothing from ``llm``, ``budget``, ``stages`` or the database.
"""
