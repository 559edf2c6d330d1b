"""The six stages; each module has ``run(deps, *, lead_id, run_id)``."""
