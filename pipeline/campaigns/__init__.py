"""Campaigns and their batches: creating batches from parsed exports, nightly schedules and drop
folders, the sweep of stalled leads, outcome imports and the export of approved emails.
"""
