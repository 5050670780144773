"""``tandem experiments surrogate``: fit the surrogate of day-7 retention from the topics, and check it.

Exposures and events are read from the beginning (the archive holds what the topics no
longer do; topics retain weeks) into an ``OutcomeJoin``: every (experiment, user) whose
day-7 interval has closed by the newest event time becomes a row. The surrogate is fitted
on all rows; with two past experiments or more, its held-out validity per experiment and
variant is printed (effect through the surrogate against the realized effect, intervals).

``--follow`` keeps reading as outcomes arrive and refits every ``--every`` of event time
(``RefitSchedule``), writing each fit over ``--out`` (atomically) and printing a line per
fit. A refit is considered only when every partition is read to its end, at the slowest
events partition's newest event time (among those that have delivered one): outcomes are
events, so a row closes only once every events partition has passed its outcome interval;
exposures only anchor units, and an exposure read after its interval passed is a row at the
next refit. A refit is not pushed into a running experiment's policy: changing a treatment
mid-experiment would void its comparison; the next spec version takes the file.

The follower's join is a ``RollingOutcomeJoin``: a process that runs for months holds the events
of the last ``--allowed-lateness`` (28 days by default) and the outcome interval, not the
history; a record later than that is counted (``late`` in each fit's line), not joined.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from experiments.lifecycle import read_specs
from experiments.surrogate import (
    DEFAULT_ATTRIBUTION_WINDOW_MS,
    OutcomeJoin,
    RefitSchedule,
    RollingOutcomeJoin,
    Surrogate,
    fit_surrogate,
    validate,
)
from infra.kafka.config import consumer_config
from infra.kafka.topic_reader import caught_up, partitions_of, read_topic
from infra.kafka.topics import EVENTS, EXPOSURES
from infra.settings import Settings
from streams.events import Exposure, ListeningEvent, RecordT, decode


def join_from_topics(settings: Settings) -> tuple[OutcomeJoin, int]:
    """The join of every exposure and event on the topics, and the newest event time seen."""
    join = OutcomeJoin()
    newest = 0
    for record in read_topic(settings, settings.topic(EXPOSURES)):
        exposure = _decoded(record.value, Exposure)
        if exposure is not None:
            join.add_exposure(exposure.exposure_id, exposure.experiment, exposure.variant, exposure.user_id,
                              exposure.ts)
            newest = max(newest, exposure.ts)
    for record in read_topic(settings, settings.topic(EVENTS)):
        event = _decoded(record.value, ListeningEvent)
        if event is not None:
            join.add_event(event)
            newest = max(newest, event.ts)
    return join, newest


def fit_from_topics(settings: Settings, *, out: str | None) -> int:
    join, watermark = join_from_topics(settings)
    rows = join.rows(watermark=watermark)
    model = fit_surrogate(rows, fitted_at=watermark)
    result: dict[str, Any] = {"surrogate": model.to_state(), "rows": len(rows),
                              "pending": join.pending(watermark)}
    experiments = {row.experiment for row in rows}
    if len(experiments) >= 2:
        controls = {spec.id: spec.control for spec in read_specs(settings).values() if spec.id in experiments}
        validity = validate([r for r in rows if r.experiment in controls], controls=controls)
        result["validity"] = {"agreement": validity.agreement, "sign_agreement": validity.sign_agreement,
                              "rows": [dataclasses.asdict(row) for row in validity.rows]}
    if out:
        Path(out).write_text(json.dumps(model.to_state(), indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))
    return 0


class SurrogateFollower:
    """Exposures and events as they are read; a refit when one is due (module doc)."""

    def __init__(self, *, every_ms: int, min_rows: int = 50,
                 allowed_lateness_ms: int = DEFAULT_ATTRIBUTION_WINDOW_MS) -> None:
        self.join = RollingOutcomeJoin(allowed_lateness_ms=allowed_lateness_ms)
        self.schedule = RefitSchedule(self.join, every_ms=every_ms, min_rows=min_rows)
        self.newest: dict[int, int] = {}  # per events partition

    def add_exposure(self, exposure: Exposure) -> None:
        self.join.add_exposure(exposure.exposure_id, exposure.experiment, exposure.variant, exposure.user_id,
                               exposure.ts)

    def add_event(self, partition: int, event: ListeningEvent) -> None:
        self.join.add_event(event)
        if event.ts > self.newest.get(partition, event.ts - 1):
            self.newest[partition] = event.ts

    @property
    def watermark(self) -> int | None:
        return min(self.newest.values()) if self.newest else None

    def maybe_refit(self) -> Surrogate | None:
        watermark = self.watermark
        return None if watermark is None else self.schedule.maybe_refit(watermark)


def follow_topics(settings: Settings, *, out: str, every_ms: int, min_rows: int = 50,
                  idle_exit_s: float | None = None, allowed_lateness_ms: int = DEFAULT_ATTRIBUTION_WINDOW_MS) -> int:
    """Refit as outcomes arrive until interrupted (or idle for ``idle_exit_s``); module doc."""
    from kafka import KafkaConsumer, TopicPartition

    follower = SurrogateFollower(every_ms=every_ms, min_rows=min_rows, allowed_lateness_ms=allowed_lateness_ms)
    exposures = settings.topic(EXPOSURES)
    consumer = KafkaConsumer(**consumer_config(settings, group_id=None))
    try:
        assigned = [TopicPartition(topic, p) for topic in (exposures, settings.topic(EVENTS))
                    for p in partitions_of(consumer, topic)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        active = time.monotonic()
        while idle_exit_s is None or time.monotonic() - active < idle_exit_s:
            batch = consumer.poll(timeout_ms=500, max_records=5000)
            for tp, records in batch.items():
                active = time.monotonic()
                for record in records:
                    if tp.topic == exposures:
                        exposure = _decoded(record.value, Exposure)
                        if exposure is not None:
                            follower.add_exposure(exposure)
                    else:
                        event = _decoded(record.value, ListeningEvent)
                        if event is not None:
                            follower.add_event(tp.partition, event)
            if not all(caught_up(consumer, tp) for tp in assigned):
                continue  # a partition not read to its end may hold outcomes of rows the watermark closes
            model = follower.maybe_refit()
            if model is not None:
                _write_atomically(Path(out), json.dumps(model.to_state(), indent=2) + "\n")
                print(json.dumps({"fitted_at": model.fitted_at, "rows": model.n,
                                  "pending": follower.join.pending(model.fitted_at or 0),
                                  "late": follower.join.late, "held_events": follower.join.held_events(),
                                  "coefficients": model.coefficients}), flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


def _decoded(raw: bytes | None, schema: type[RecordT]) -> RecordT | None:
    try:
        return decode(raw or b"", schema)
    except ValueError:
        return None  # the aggregator and the workers dead-letter it


def _write_atomically(path: Path, text: str) -> None:
    """A reader of ``path`` (the gate) sees the old fit or the new one whole, never half of one."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
