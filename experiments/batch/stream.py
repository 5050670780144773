"""The stream's figures, as the ``experiment-metrics`` topic holds them, for comparison with batch.

Readers compact: the newest record of each key counts. A key is ``experiment/variant/metric``
(one aggregator) or ``experiment/variant/metric/partition`` (an aggregator per input
partition, each publishing its partial); partials of one (variant, metric) are summed. Each
figure is as of its record's ``watermark_ts``: windows closed at ``watermark_ts - allowed
lateness`` (of that partition, for partials).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from experiments.batch.errors import BatchError
from experiments.batch.results import SUM_FIELDS, MetricStats


@dataclass(frozen=True)
class StreamFigure:
    """One (variant, metric) of the stream: its statistics and the cut they were taken at.

    ``watermarks`` maps the input partition of each partial to its watermark; a record keyed
    without a partition is under ``None``.
    """

    stats: MetricStats
    watermarks: Mapping[int | None, int]
    late_records: int

    def closed_upto(self, allowed_lateness_ms: int) -> int | dict[int, int]:
        if None in self.watermarks:
            return self.watermarks[None] - allowed_lateness_ms
        return {p: w - allowed_lateness_ms for p, w in self.watermarks.items() if p is not None}


def _split_key(key: str) -> tuple[str, str, str, int | None]:
    parts = key.split("/")
    if len(parts) == 3:
        return parts[0], parts[1], parts[2], None
    if len(parts) == 4 and parts[3].isdigit():
        return parts[0], parts[1], parts[2], int(parts[3])
    raise BatchError(f"key: {key!r} is neither experiment/variant/metric nor experiment/variant/metric/partition")


def stream_figures(
    records: Iterable[tuple[bytes | None, bytes | None]], experiment: str
) -> dict[tuple[str, str], StreamFigure]:
    """(key, value) pairs of ``experiment-metrics`` in topic order → the figures of one experiment,
    by (variant, metric)."""
    newest: dict[str, dict[str, Any]] = {}
    for raw_key, raw_value in records:
        if raw_key is None:
            continue
        key = raw_key.decode("utf-8")
        if not key.startswith(f"{experiment}/"):
            continue
        if raw_value is None:  # a tombstone removes the key
            newest.pop(key, None)
            continue
        try:
            newest[key] = json.loads(raw_value)
        except ValueError as exc:
            raise BatchError(f"experiment-metrics record {key!r}: not JSON ({exc})") from None
    partials: dict[tuple[str, str], list[tuple[int | None, dict[str, Any]]]] = {}
    for key, record in newest.items():
        _, variant, metric, partition = _split_key(key)
        partials.setdefault((variant, metric), []).append((partition, record))
    return {key: _summed(experiment, key, items) for key, items in sorted(partials.items())}


def _summed(experiment: str, key: tuple[str, str], items: list[tuple[int | None, dict[str, Any]]]) -> StreamFigure:
    variant, metric = key
    first = items[0][1]
    sums: dict[str, float | None] = {}
    for name in SUM_FIELDS:
        values = [record.get(name) for _, record in items]
        sums[name] = None if all(v is None for v in values) else float(sum(v or 0 for v in values))
    try:
        stats = MetricStats(
            experiment=experiment, variant=variant, metric=metric, kind=str(first["kind"]), role=str(first["role"]),
            n=sum(int(record["n"]) for _, record in items),
            sum=sums["sum"] or 0.0, sum_sq=sums["sum_sq"] or 0.0,
            den_sum=sums["den_sum"], den_sum_sq=sums["den_sum_sq"], cross_sum=sums["cross_sum"],
            pre_sum=sums["pre_sum"], pre_sum_sq=sums["pre_sum_sq"], pre_cross_sum=sums["pre_cross_sum"],
            exposed=sum(int(record["exposed"]) for _, record in items),
            multi_variant_users=sum(int(record.get("multi_variant_users", 0)) for _, record in items),
        )
        watermarks = {partition: int(record["watermark_ts"]) for partition, record in items}
        late = sum(int(record.get("late_records", 0)) for _, record in items)
    except KeyError as exc:
        raise BatchError(f"experiment-metrics record {experiment}/{variant}/{metric}: {exc.args[0]}: missing") from None
    # Per-partition partials each say how many records their partition rejected; one record
    # counts the experiment's total, repeated on every key: take it once.
    return StreamFigure(stats=stats, watermarks=watermarks, late_records=late if None not in watermarks else
                        int(first.get("late_records", 0)))


def read_stream_figures(settings: Any, experiment: str) -> dict[tuple[str, str], StreamFigure]:
    """The figures of ``experiment`` from the ``experiment-metrics`` topic, read to its end."""
    from infra.kafka.topic_reader import read_topic
    from infra.kafka.topics import EXPERIMENT_METRICS

    records = read_topic(settings, settings.topic(EXPERIMENT_METRICS))
    return stream_figures(((r.key, r.value) for r in records), experiment)
