"""The automatic stop: checks valid under continuous monitoring, run on every metric update.

``evaluate(spec, records)`` runs every check on an experiment's newest combined
``experiment-metrics`` records (``combine`` sums per-partition partials) and says whether it
must stop and why; the console's process runs it on each update and records the stop.
"""

from experiments.monitor.checks import SRM_THRESHOLD, HealthCheck, Verdict, evaluate, guardrail_check, srm_check
from experiments.monitor.records import as_of, base_key, combine, newest_per_key
from experiments.monitor.srm import sequential_srm

__all__ = [
    "SRM_THRESHOLD", "HealthCheck", "Verdict", "as_of", "base_key", "combine", "evaluate", "guardrail_check",
    "newest_per_key", "sequential_srm", "srm_check",
]
