"""The report of a bandit experiment: period-weighted effects and the per-period sample-ratio check.

Users are grouped by the period in which they first arrived (their first exposure's event time
against the spec's periods) and by their variant; the success and guardrail metrics are computed
per user over their windows (``experiments.aggregation.windows.contribution``) and combined with
``experiments.stats.periods``. Reads the exposures and events (here from the topics; on a platform
from the archive, in batch).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from experiments.aggregation.windows import MetricEvent, contribution
from experiments.report.interactions import first_exposures, read_exposures_and_events
from experiments.spec import ExperimentSpec
from experiments.stats.periods import PeriodCell, PeriodSrm, PeriodWeightedEffect, period_srm, period_weighted_effect
from infra.settings import Settings
from streams.events import Exposure


@dataclass(frozen=True, slots=True)
class BanditReport:
    experiment: str
    periods: int
    users: dict[str, int]  # per variant
    effects: dict[tuple[str, str], PeriodWeightedEffect]  # (metric, treatment) -> effect against control
    srm: PeriodSrm


def period_of(spec: ExperimentSpec, ts: int) -> int:
    """0 for the variants' weights, k for the k-th appended period."""
    return sum(1 for period in spec.periods if period.start <= ts)


def bandit_report(spec: ExperimentSpec, exposures: Iterable[Exposure], events: Iterable[MetricEvent], *,
                  closed_upto: int, alpha: float | None = None) -> BanditReport:
    first = first_exposures([spec], exposures)[spec.id]
    by_user: dict[str, list[MetricEvent]] = {}
    for event in events:
        if event.user_id in first:
            by_user.setdefault(event.user_id, []).append(event)
    counts: dict[tuple[str, int], int] = {}
    cells: dict[tuple[str, str, int], PeriodCell] = {}
    for user, anchor in first.items():
        period = period_of(spec, anchor.ts)
        counts[(anchor.variant, period)] = counts.get((anchor.variant, period), 0) + 1
        for metric in spec.metrics:
            if metric.kind == "ratio" or anchor.ts + metric.end_offset > closed_upto:
                continue
            value = contribution(metric, by_user.get(user, ()), anchor.ts).value
            key = (metric.name, anchor.variant, period)
            cells[key] = cells.get(key, PeriodCell()).add(value)
    weights = [{v.name: v.weight for v in spec.variants}] + [dict(p.weights) for p in spec.periods]
    effects = {}
    for metric in spec.metrics:
        mine = {(variant, period): cell for (name, variant, period), cell in cells.items() if name == metric.name}
        for variant in (v.name for v in spec.variants if v.name != spec.control):
            try:
                effects[(metric.name, variant)] = period_weighted_effect(
                    mine, control=spec.control, treatment=variant, alpha=alpha or spec.alpha)
            except ValueError:
                continue  # too few users yet
    users: dict[str, int] = {}
    for (variant, _), n in counts.items():
        users[variant] = users.get(variant, 0) + n
    return BanditReport(spec.id, len(spec.periods) + 1, users, effects, period_srm(counts, weights))


def bandit_report_from_topics(settings: Settings, spec: ExperimentSpec, *, lateness_ms: int = 30 * 60_000
                              ) -> BanditReport | None:
    exposures, events = read_exposures_and_events(settings)
    if not events:
        return None
    return bandit_report(spec, exposures, events, closed_upto=max(e.ts for e in events) - lateness_ms)


def render(report: BanditReport) -> str:
    lines = [f"bandit {report.experiment}: {report.periods} periods, users {report.users}; "
             f"SRM against each period's weights: p = {report.srm.p_value:.3g} "
             f"({'passed' if report.srm.passed else 'FAILED'})"]
    for (metric, variant), effect in sorted(report.effects.items()):
        lines.append(f"  {metric} {variant} - control (period-weighted): {effect.estimate:+.4g} "
                     f"[{effect.ci_low:+.4g}, {effect.ci_high:+.4g}], p = {effect.p_value:.3g}")
    return "\n".join(lines)
