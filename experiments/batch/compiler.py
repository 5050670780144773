"""Metrics as SQL: one query per experiment that yields the stream's sufficient statistics.

The query reads two relations, ``events`` and ``exposures`` (the archive's columns), and is
plain SQL that DuckDB and Spark SQL both run unchanged: no dialect switch, so the engines
cannot drift. It reproduces the aggregator's rules (``experiments/aggregation/state.py`` and
``windows.py``):

* records are deduplicated on their id (the first copy by partition and offset is kept);
* exposures count only for the experiment's variants and inside ``[start, end)``; a user's
  first exposure by ``(ts, exposure_id)`` fixes the variant and anchors every window; a user
  seen in more than one variant stays in the first and is counted in ``multi_variant_users``;
* a metric window is ``[anchor + delay, anchor + delay + length)``, the CUPED pre-window
  ``[anchor - covariate.length, anchor)``; a user's window is closed (and the user counted in
  ``n``) when ``window end <= closed_upto`` (``watermark - allowed lateness``); the others are
  in progress;
* per-user values are whole numbers (counts, milliseconds, 0/1), so they are summed as
  DECIMAL(38, 0): exact on both engines, whatever the order of the additions.

``closed_upto`` is one instant, or one per exposures partition (the user's first exposure
decides which), for a stream whose partitions are aggregated with watermarks of their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from experiments.batch.errors import CompileError
from experiments.spec import ExperimentSpec, Measure, Metric

#: Names that may appear in a query as literals: the spec's ``Name`` pattern, so never a quote.
_SAFE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_AGGS = ("count", "sum_ms_played", "active", "distinct_items", "distinct_genres")
#: Per-user values: whole numbers below 10**18; their products below 10**36.
_VALUE = "DECIMAL(18, 0)"
_SUM = "DECIMAL(38, 0)"


@dataclass(frozen=True)
class CompiledQuery:
    """The SQL of one experiment and what it computes."""

    experiment: str
    metrics: tuple[Metric, ...]
    #: The result's columns: one row per variant with ``exposed``, ``multi_variant_users`` and,
    #: for the i-th metric, ``m<i>_n``, ``m<i>_sum``, ``m<i>_sum_sq`` and its ratio and CUPED sums.
    columns: tuple[str, ...]
    sql: str


def _literal(value: str, field: str) -> str:
    if not _SAFE.match(value):
        raise CompileError(f"{field}: {value!r} cannot be used in SQL (letters, digits, _ . - only)")
    return f"'{value}'"


def _integer(value: object, field: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CompileError(f"{field}: {value!r} is not an integer number of milliseconds")
    return str(value)


def _condition(measure: Measure, lo: str, hi: str, field: str) -> str:
    """Whether the joined event ``e`` counts for the measure inside ``[lo, hi)``."""
    parts = [f"e.ts >= {lo}", f"e.ts < {hi}"]
    if measure.types is not None:
        types = ", ".join(_literal(str(getattr(t, "value", t)), f"{field}.types") for t in measure.types)
        parts.append(f"e.type IN ({types})")
    return " AND ".join(parts)


def _measure_sql(measure: Measure, lo: str, hi: str, field: str) -> str:
    """The measure of one user, as an aggregate over the user's joined events."""
    if measure.agg not in _AGGS:
        raise CompileError(f"{field}.agg: {measure.agg!r} cannot be compiled to SQL (one of {', '.join(_AGGS)})")
    where = _condition(measure, lo, hi, field)
    expression = {
        "count": f"SUM(CASE WHEN {where} THEN 1 ELSE 0 END)",
        "sum_ms_played": f"SUM(CASE WHEN {where} THEN e.ms_played ELSE 0 END)",
        "active": f"MAX(CASE WHEN {where} THEN 1 ELSE 0 END)",
        "distinct_items": f"COUNT(DISTINCT CASE WHEN {where} THEN e.item_id END)",
        "distinct_genres": f"COUNT(DISTINCT CASE WHEN {where} THEN e.genre END)",
    }[measure.agg]
    # An anchor without events in range joins one row of NULLs: SUM gives NULL, hence COALESCE.
    return f"CAST(COALESCE({expression}, 0) AS {_VALUE})"


def _check_metric(metric: Metric, field: str) -> None:
    _literal(metric.name, f"{field}.name")
    if metric.kind not in ("mean", "proportion", "ratio"):
        raise CompileError(f"{field}.kind: {metric.kind!r} cannot be compiled to SQL")
    _integer(metric.window.delay, f"{field}.window.delay")
    _integer(metric.window.length, f"{field}.window.length")
    if metric.window.delay < 0 or metric.window.length <= 0:
        raise CompileError(f"{field}.window: needs delay >= 0 and length > 0")
    if metric.kind == "ratio":
        if metric.numerator is None or metric.denominator is None:
            raise CompileError(f"{field}.numerator: a ratio metric needs numerator and denominator")
        if metric.covariate is not None:
            raise CompileError(f"{field}.covariate: CUPED is compiled for mean and proportion metrics only")
    elif metric.measure is None:
        raise CompileError(f"{field}.measure: required for a {metric.kind} metric")
    if metric.covariate is not None:
        _integer(metric.covariate.length, f"{field}.covariate.length")


def _closed_upto_sql(closed_upto: int | Mapping[int, int]) -> str:
    if isinstance(closed_upto, Mapping):
        if not closed_upto:
            return "CAST(NULL AS BIGINT)"
        whens = " ".join(
            f"WHEN {_integer(p, 'partition')} THEN {_integer(c, 'closed_upto')}" for p, c in sorted(closed_upto.items())
        )
        return f"CAST(CASE r.kafka_partition {whens} END AS BIGINT)"
    return f"CAST({_integer(closed_upto, 'closed_upto')} AS BIGINT)"


def compile_experiment(
    spec: ExperimentSpec, *, closed_upto: int | Mapping[int, int], metrics: Sequence[str] | None = None
) -> CompiledQuery:
    """The query computing the sufficient statistics of ``spec``'s metrics (all, or those named)."""
    chosen = _chosen_metrics(spec, metrics)
    index = {m.name: i for i, m in enumerate(spec.metrics)}
    values: list[str] = []
    sums: list[str] = []
    columns: list[str] = ["variant", "exposed", "multi_variant_users"]
    for i, metric in enumerate(chosen):
        metric_values, metric_sums = _metric_sql(i, metric, f"metrics[{index[metric.name]}]")
        values += metric_values
        sums += [f"{term_sql} AS m{i}_{name}" for name, term_sql in metric_sums.items()]
        columns += [f"m{i}_{name}" for name in metric_sums]
    sql = _query_sql(spec, chosen, closed_upto=closed_upto, values=values, sums=sums)
    return CompiledQuery(experiment=spec.id, metrics=tuple(chosen), columns=tuple(columns), sql=sql)


def _chosen_metrics(spec: ExperimentSpec, names: Sequence[str] | None) -> list[Metric]:
    """The spec's metrics named (all when none is), each checked to be computable in SQL."""
    chosen = list(spec.metrics)
    if names is not None:
        unknown = [name for name in names if spec.metric(name) is None]
        if unknown:
            raise CompileError(f"metric: {', '.join(map(repr, unknown))} not in experiment {spec.id!r}")
        chosen = [m for m in spec.metrics if m.name in names]
    if not chosen:
        raise CompileError("metrics: nothing to compute")
    index = {m.name: i for i, m in enumerate(spec.metrics)}
    for metric in chosen:
        _check_metric(metric, f"metrics[{index[metric.name]}]")
    return chosen


def _metric_sql(i: int, metric: Metric, field: str) -> tuple[list[str], dict[str, str]]:
    """One metric's per-user value columns and its per-variant sums (term name -> SQL)."""
    lo = f"a.anchor_ts + {metric.window.delay}"
    hi = f"a.anchor_ts + {metric.end_offset}"
    y, den, pre = f"m{i}_y", f"m{i}_den", f"m{i}_pre"
    values: list[str] = []
    terms = {"n": "1", "sum": y, "sum_sq": f"{y} * {y}"}
    if metric.kind == "ratio":
        assert metric.numerator is not None and metric.denominator is not None
        values.append(f"{_measure_sql(metric.numerator, lo, hi, field + '.numerator')} AS {y}")
        values.append(f"{_measure_sql(metric.denominator, lo, hi, field + '.denominator')} AS {den}")
        terms.update(den_sum=den, den_sum_sq=f"{den} * {den}", cross_sum=f"{y} * {den}")
    else:
        assert metric.measure is not None
        values.append(f"{_measure_sql(metric.measure, lo, hi, field + '.measure')} AS {y}")
    if metric.covariate is not None:
        assert metric.measure is not None
        pre_lo = f"a.anchor_ts - {metric.covariate.length}"
        values.append(f"{_measure_sql(metric.measure, pre_lo, 'a.anchor_ts', field + '.covariate')} AS {pre}")
        terms.update(pre_sum=pre, pre_sum_sq=f"{pre} * {pre}", pre_cross_sum=f"{pre} * {y}")
    closed = f"anchor_ts + {metric.end_offset} <= closed_upto"
    # Users whose window is still open add nothing (SUM over no rows is NULL: read as 0).
    return values, {name: f"SUM(CASE WHEN {closed} THEN {term} END)" for name, term in terms.items()}


def _query_sql(
    spec: ExperimentSpec, chosen: Sequence[Metric], *, closed_upto: int | Mapping[int, int],
    values: Sequence[str], sums: Sequence[str],
) -> str:
    """The whole query: deduplicate, anchor each user at the first exposure, measure, sum per variant."""
    experiment = _literal(spec.id, "id")
    variants = ", ".join(_literal(v.name, f"variants[{i}].name") for i, v in enumerate(spec.variants))
    start, end = _integer(spec.start, "start"), _integer(spec.end, "end")
    reach_back = max(m.pre_length for m in chosen)
    reach_ahead = max(m.end_offset for m in chosen)
    nearest_end = min(m.end_offset for m in chosen)
    value_columns = ",\n    ".join(values)
    sum_columns = ",\n  ".join(sums)
    # Every literal in this query went through _literal (the spec's name pattern) or _integer: no quote can enter.
    return f"""WITH
deduplicated_events AS (
  SELECT user_id, ts, type, item_id, genre, ms_played FROM (
    SELECT user_id, ts, type, item_id, genre, ms_played,
      ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY kafka_partition, kafka_offset) AS copy
    FROM events
  ) numbered WHERE copy = 1
),
accepted_exposures AS (
  SELECT exposure_id, user_id, variant, ts, kafka_partition FROM (
    SELECT exposure_id, user_id, variant, ts, kafka_partition,
      ROW_NUMBER() OVER (PARTITION BY exposure_id ORDER BY kafka_partition, kafka_offset) AS copy
    FROM exposures
    WHERE experiment = {experiment} AND variant IN ({variants}) AND ts >= {start} AND ts < {end}
  ) numbered WHERE copy = 1
),
ranked AS (
  SELECT user_id, variant, ts, kafka_partition,
    ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY ts, exposure_id) AS place,
    MIN(variant) OVER (PARTITION BY user_id) AS low_variant,
    MAX(variant) OVER (PARTITION BY user_id) AS high_variant
  FROM accepted_exposures
),
anchors AS (
  SELECT r.user_id, r.variant, r.ts AS anchor_ts,
    CASE WHEN r.low_variant <> r.high_variant THEN 1 ELSE 0 END AS multi,
    {_closed_upto_sql(closed_upto)} AS closed_upto
  FROM ranked r WHERE r.place = 1
),
users AS (
  SELECT a.user_id, a.variant, a.anchor_ts, a.closed_upto, a.multi,
    {value_columns}
  FROM anchors a
  LEFT JOIN deduplicated_events e
    ON e.user_id = a.user_id AND a.anchor_ts + {nearest_end} <= a.closed_upto
    AND e.ts >= a.anchor_ts - {reach_back} AND e.ts < a.anchor_ts + {reach_ahead}
  GROUP BY a.user_id, a.variant, a.anchor_ts, a.closed_upto, a.multi
)
SELECT variant, COUNT(*) AS exposed, SUM(multi) AS multi_variant_users,
  {sum_columns}
FROM users GROUP BY variant
"""  # noqa: S608
