"""Interaction checks between concurrent experiments: does one experiment's effect depend on another's arm?

Experiments of different layers overlap orthogonally, so each one's effect is an average over
the other's arms. That average is what an owner wants unless the two interact. For every pair
of experiments with users in both and for every metric both define alike, the check compares
the effect of each treatment of ``A`` (against A's control) among the users in the control of
``B`` with the same effect among the users in each treatment of ``B``:

    interaction = (mean[a1, b1] - mean[a0, b1]) - (mean[a1, b0] - mean[a0, b0])

with standard error ``sqrt(Σ var/n)`` over the four cells (independent users) and a two-sided
z-test. The p-values of all pairs, arms and metrics are Holm-corrected together; an interaction
is flagged when its adjusted p-value is below alpha. Mean and proportion metrics only (a ratio's
cells would need the delta method per cell; not done).

The cells come from the exposures and the events (``cells_from_records``): a user's metric value
is the metric of ``A`` anchored at the user's first exposure to ``A`` (``experiments.aggregation.
windows.contribution``), and the user's arm of ``B`` is the variant of the first exposure to ``B``.
On a platform this reads the archive in batch; here it reads what it is given.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import permutations

from scipy import stats as scipy_stats

from experiments.aggregation.windows import MetricEvent, contribution
from experiments.spec import ExperimentSpec, Metric
from experiments.stats.correction import adjust
from experiments.stats.moments import Moments
from infra.kafka.topic_reader import read_topic
from infra.kafka.topics import EVENTS, EXPOSURES, Topic
from infra.settings import Settings
from streams.errors import InvalidRecord
from streams.events import Exposure, ListeningEvent, RecordT, decode

#: Sufficient statistics of one metric over the users in one (A variant, B variant) cell.
Cell = Moments

#: (metric, A's variant, B's variant) -> cell, for one ordered pair (A, B).
Cells = Mapping[tuple[str, str, str], Cell]


@dataclass(frozen=True, slots=True)
class Interaction:
    metric: str
    experiment: str
    treatment: str
    control: str
    other: str
    other_treatment: str
    other_control: str
    effect_in_other_control: float
    effect_in_other_treatment: float
    difference: float
    std_error: float
    p_value: float
    adjusted_p_value: float
    flagged: bool
    users: int

    def describe(self) -> str:
        verdict = "INTERACTION" if self.flagged else "no interaction"
        return (f"{self.metric}: {self.experiment} {self.treatment} - {self.control} is "
                f"{self.effect_in_other_control:+.4g} among {self.other} {self.other_control} and "
                f"{self.effect_in_other_treatment:+.4g} among {self.other} {self.other_treatment} "
                f"(difference {self.difference:+.4g} ± {1.96 * self.std_error:.3g}, adjusted p "
                f"{self.adjusted_p_value:.3g}, {self.users} users): {verdict}")


def shared_metrics(a: ExperimentSpec, b: ExperimentSpec) -> list[Metric]:
    """A's metrics that B defines alike (same name, kind, measure and window), means and proportions only."""
    out = []
    for metric in a.metrics:
        other = b.metric(metric.name)
        if metric.kind == "ratio" or other is None:
            continue
        if (other.kind, other.measure, other.window) == (metric.kind, metric.measure, metric.window):
            out.append(metric)
    return out


def interaction_tests(
    a: ExperimentSpec, b: ExperimentSpec, cells: Cells, *, metrics: Sequence[Metric]
) -> list[tuple[Interaction, float]]:
    """Uncorrected tests of every treatment of A against every treatment of B, per metric; each with
    its raw p-value (``check_interactions`` corrects them together). Cells with fewer than 2 users
    make no test."""
    out = []
    for metric in metrics:
        for a1 in (v.name for v in a.variants if v.name != a.control):
            for b1 in (v.name for v in b.variants if v.name != b.control):
                four = [cells.get((metric.name, x, y), Cell()) for x in (a.control, a1) for y in (b.control, b1)]
                if any(cell.n < 2 for cell in four):
                    continue
                a0b0, a0b1, a1b0, a1b1 = four
                in_control = a1b0.mean - a0b0.mean
                in_treatment = a1b1.mean - a0b1.mean
                se = math.sqrt(sum(cell.variance / cell.n for cell in four))
                difference = in_treatment - in_control
                p = float(2 * scipy_stats.norm.sf(abs(difference) / se)) if se > 0 else (
                    0.0 if difference else 1.0)
                out.append((Interaction(
                    metric.name, a.id, a1, a.control, b.id, b1, b.control, in_control, in_treatment, difference,
                    se, p, p, False, sum(cell.n for cell in four)), p))
    return out


def check_interactions(
    specs: Sequence[ExperimentSpec], cells_by_pair: Mapping[tuple[str, str], Cells], *, alpha: float = 0.05
) -> list[Interaction]:
    """Every ordered pair's tests, Holm-corrected together; flagged when the adjusted p < alpha."""
    by_id = {spec.id: spec for spec in specs}
    raw: list[tuple[Interaction, float]] = []
    for (a_id, b_id), cells in sorted(cells_by_pair.items()):
        a, b = by_id[a_id], by_id[b_id]
        raw += interaction_tests(a, b, cells, metrics=shared_metrics(a, b))
    adjusted, _levels = adjust([p for _, p in raw], "holm", alpha=alpha)
    return [replace(result, adjusted_p_value=q, flagged=q < alpha)
            for (result, _), q in zip(raw, adjusted, strict=True)]


def first_exposures(specs: Iterable[ExperimentSpec], exposures: Iterable[Exposure]) -> dict[str, dict[str, Exposure]]:
    """experiment -> user -> first exposure (by ``(ts, exposure_id)``, inside the experiment's period)."""
    by_id = {spec.id: spec for spec in specs}
    first: dict[str, dict[str, Exposure]] = {exp: {} for exp in by_id}
    for exposure in exposures:
        spec = by_id.get(exposure.experiment)
        if spec is None or spec.variant(exposure.variant) is None or not spec.start <= exposure.ts < spec.end:
            continue
        seen = first[spec.id].get(exposure.user_id)
        if seen is None or (exposure.ts, exposure.exposure_id) < (seen.ts, seen.exposure_id):
            first[spec.id][exposure.user_id] = exposure
    return first


def cells_from_records(
    specs: Sequence[ExperimentSpec], exposures: Iterable[Exposure], events: Iterable[MetricEvent], *,
    closed_upto: int,
) -> dict[tuple[str, str], dict[tuple[str, str, str], Cell]]:
    """Per ordered pair of experiments (A, B) with users in both: the cells of A's shared metrics by
    (metric, A's variant, B's variant), over users whose A window has closed by ``closed_upto``."""
    first = first_exposures(specs, exposures)
    by_user: dict[str, list[MetricEvent]] = {}
    seen_ids: set[str] = set()
    for event in events:
        if event.event_id not in seen_ids:  # replayed duplicates count once
            seen_ids.add(event.event_id)
            by_user.setdefault(event.user_id, []).append(event)
    out: dict[tuple[str, str], dict[tuple[str, str, str], Cell]] = {}
    for a, b in permutations(specs, 2):
        metrics = shared_metrics(a, b)
        both = first[a.id].keys() & first[b.id].keys()
        if not metrics or not both:
            continue
        cells: dict[tuple[str, str, str], Cell] = {}
        for user in both:
            anchor, other = first[a.id][user], first[b.id][user]
            for metric in metrics:
                if anchor.ts + metric.end_offset > closed_upto:
                    continue
                value = contribution(metric, by_user.get(user, ()), anchor.ts).value
                key = (metric.name, anchor.variant, other.variant)
                cells[key] = cells.get(key, Cell()).add(value)
        out[(a.id, b.id)] = cells
    return out


def interactions_from_topics(settings: Settings, specs: Sequence[ExperimentSpec], *, alpha: float = 0.05,
                             lateness_ms: int = 30 * 60_000) -> list[Interaction]:
    """Read the exposures and events topics to their end and check every pair of ``specs``; windows
    count once the newest event time less ``lateness_ms`` has passed them."""
    exposures, events = read_exposures_and_events(settings)
    if not events:
        return []
    closed_upto = max(e.ts for e in events) - lateness_ms
    return check_interactions(specs, cells_from_records(specs, exposures, events, closed_upto=closed_upto),
                              alpha=alpha)


def read_exposures_and_events(settings: Settings) -> tuple[list[Exposure], list[MetricEvent]]:
    """Every valid record of the exposures and events topics, in topic order."""
    exposures = list(_decoded(settings, EXPOSURES, Exposure))
    return exposures, [MetricEvent.of(event) for event in _decoded(settings, EVENTS, ListeningEvent)]


def _decoded(settings: Settings, topic: Topic, schema: type[RecordT]) -> Iterator[RecordT]:
    for record in read_topic(settings, settings.topic(topic)):
        try:
            yield decode(record.value or b"", schema)
        except InvalidRecord:
            continue  # dead-lettered by the consumers; not a metric input
