"""Celery wiring only: app, queues, tasks, canvas, lifecycle, CLI."""
