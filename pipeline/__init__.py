"""leadpipe domain logic: ingestion, stages, routing, pricing, the model gateway.

Nothing in this package imports Celery; ``workers/`` wires it to queues.
"""
