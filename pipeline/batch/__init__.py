"""The batch path: large groups of model requests sent as one unit instead of one call each.

Owns the batch backend contract (``backend.py``), the collector that groups pending requests of
one stage and model into a group (``collector.py``, tables ``batch_requests`` / ``batch_groups``),
the self-hosted OpenAI-compatible endpoint backend with bounded concurrency and its pricing
(``selfhosted.py``), the deadline planner (``planner.py``, pure; lead deadlines in
``deadlines.py``) and the provider batch APIs' beat poll (``provider.py``: collect a finished
batch or flip a late one to sync; ``awaiting.py``: its database side; the HTTP clients are
``llm/providers/batch_api.py``).

May import ``llm`` (requests, answers, journal, prices, providers), ``budget`` and ``db``; never
``stages``, ``campaigns`` or ``reporting``, never celery or ``workers`` (the ``batch`` queue's
tasks live in ``workers/batch_tasks.py``) and never httpx directly (HTTP stays in
``llm/providers``).
"""
