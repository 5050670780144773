"""Whether the aggregator can fold a spec's metrics, checked before the spec goes live.

The schema already refuses an unknown event type or metric kind (``experiments.spec``). What
the aggregator adds is its own limit: it keeps each user's history for the longest CUPED
pre-window of a live experiment, up to ``MAX_PRE_PERIOD_MS``; a spec asking for more would
get pre-values from a history that was already forgotten. An aggregator started without the
item and genre sets of its buckets (``item_sets=False``, ``--no-item-sets``) cannot fold a
``distinct_items`` or ``distinct_genres`` measure.

>>> from experiments.spec import DEMO_SPEC_PATH, load_spec
>>> check_foldable(load_spec(DEMO_SPEC_PATH), max_pre_period_ms=DAY)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
experiments.errors.InvalidSpec: experiment spec: metrics[1].covariate.length: 7 days is longer than ...
"""

from __future__ import annotations

from experiments.errors import InvalidSpec
from experiments.spec import ExperimentSpec

DAY = 86_400_000
#: The longest CUPED pre-period the aggregator keeps history for.
MAX_PRE_PERIOD_MS = 28 * DAY


def check_foldable(
    spec: ExperimentSpec, *, max_pre_period_ms: int = MAX_PRE_PERIOD_MS, item_sets: bool = True
) -> ExperimentSpec:
    """The spec, if the aggregator can fold every metric of it; else ``InvalidSpec`` naming the field."""
    for i, metric in enumerate(spec.metrics):
        if metric.covariate is not None and metric.covariate.length > max_pre_period_ms:
            raise InvalidSpec(
                f"experiment spec: metrics[{i}].covariate.length: {_days(metric.covariate.length)} is longer "
                f"than the aggregator keeps ({_days(max_pre_period_ms)})"
            )
        if not item_sets:
            measures = {"measure": metric.measure, "numerator": metric.numerator, "denominator": metric.denominator}
            for name, measure in measures.items():
                if measure is not None and measure.agg in ("distinct_items", "distinct_genres"):
                    raise InvalidSpec(
                        f"experiment spec: metrics[{i}].{name}.agg: {measure.agg} needs the item and genre sets, "
                        "which this aggregator does not keep (--no-item-sets)"
                    )
    return spec


def _days(ms: int) -> str:
    return f"{ms / DAY:g} days"
