"""Persistence only: typed models, session helpers, queries, migrations. No business rules."""
