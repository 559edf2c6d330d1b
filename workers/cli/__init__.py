"""The ``leadpipe`` command line, the demo and the embedded Redis it starts.

Imports the Celery wiring in ``workers``; nothing in ``workers`` outside this package imports it.
"""
