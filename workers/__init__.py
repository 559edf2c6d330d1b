"""Celery wiring only: the app, queues, task adapters, chains, process lifecycle, queue control,
beat scheduler and ops tasks. The command line lives in ``workers/cli`` and imports these.
"""
