"""Campaigns and their batches: creating batches from parsed exports, nightly schedules and drop
folders, the sweep of stalled leads, outcome imports and the export of approved emails.
Every query it makes lives in ``store.py``; it may import ``ingest``, ``reporting`` and ``budget``.
"""
