"""``tandem experiments surrogate``: fit the surrogate of day-7 retention from the topics, and check it.

Exposures and events are read from the beginning (the archive holds what the topics no
longer do; topics retain weeks) into an ``OutcomeJoin``: every (experiment, user) whose
day-7 interval has closed by the newest event time becomes a row. The surrogate is fitted
on all rows; with two past experiments or more, its held-out validity per experiment and
variant is printed (effect through the surrogate against the realized effect, intervals).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from experiments.lifecycle import read_specs
from experiments.surrogate import OutcomeJoin, fit_surrogate, validate
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import EVENTS, EXPOSURES
from infra.settings import Settings
from streams.events import Exposure, ListeningEvent, decode


def join_from_topics(settings: Settings) -> tuple[OutcomeJoin, int]:
    """The join of every exposure and event on the topics, and the newest event time seen."""
    join = OutcomeJoin()
    newest = 0
    for record in read_topic(settings, settings.topic(EXPOSURES)):
        try:
            exposure = decode(record.value, Exposure)
        except ValueError:
            continue  # the aggregator dead-letters it
        join.add_exposure(exposure.exposure_id, exposure.experiment, exposure.variant, exposure.user_id, exposure.ts)
        newest = max(newest, exposure.ts)
    for record in read_topic(settings, settings.topic(EVENTS)):
        try:
            event = decode(record.value, ListeningEvent)
        except ValueError:
            continue  # the workers dead-letter it
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
