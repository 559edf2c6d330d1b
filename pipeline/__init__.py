"""leadpipe domain logic, one sub-package per capability; never imports Celery or ``workers``.

``ingest`` reads exports, ``llm`` is the only path to a model, ``budget`` guards spend, ``stages``
are the six steps of a lead, ``web`` fetches websites, ``reporting`` reads the ledger and
``campaigns`` owns batches and schedules. The modules at this level are the shared kernel:
settings, errors, logs, metrics, value objects (``models``), the ``Deps`` container and the lead
value formula.
"""
