"""The six stages (each module has ``run(deps, *, lead_id, run_id)``) and the rules they share:
stage claims and leases, the deterministic classifier, template emails, routing policy and the
output guard an email passes before approval (``guard.py``).

May import ``llm``, ``web``, ``budget`` and ``batch`` (a batchable call waits for its group);
never ``campaigns`` or ``reporting``.
"""
