"""The aggregator's ``/metrics`` families, from a published status (no broker)."""

from __future__ import annotations

from dataclasses import asdict

from prometheus_client.parser import text_string_to_metric_families

from experiments.aggregation.aggregator import AggregatorStats, aggregator_families
from infra.metrics import exposition, registry


def scraped(status: dict) -> dict:
    text = exposition(registry(lambda: aggregator_families(status))).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_published_status_is_what_a_scrape_reads() -> None:
    stats = AggregatorStats(batches=3, applied=120, skipped=5, dead_letters=2, metric_records=9,
                            consumed={"t.events": 100, "t.exposures": 25}, window_closes={"exp": 7},
                            late={"exp": 1})
    samples = scraped({**asdict(stats), "lag": {("t.events", 0): 4, ("t.exposures", 1): 0},
                       "experiments": ["exp", "quiet"]})
    assert samples[("tandem_aggregator_records_total", (("topic", "t.events"),))] == 100
    assert samples[("tandem_aggregator_records_total", (("topic", "t.exposures"),))] == 25
    assert samples[("tandem_aggregator_records_applied_total", ())] == 120
    assert samples[("tandem_aggregator_records_skipped_total", ())] == 5
    assert samples[("tandem_aggregator_batches_total", ())] == 3
    assert samples[("tandem_aggregator_window_closes_total", (("experiment", "exp"),))] == 7
    assert samples[("tandem_aggregator_late_records_total", (("experiment", "exp"),))] == 1
    assert samples[("tandem_aggregator_late_records_total", (("experiment", "quiet"),))] == 0  # a series from the start
    assert samples[("tandem_aggregator_window_closes_total", (("experiment", "quiet"),))] == 0
    assert samples[("tandem_aggregator_dead_letters_total", ())] == 2
    assert samples[("tandem_aggregator_metric_records_total", ())] == 9
    assert samples[("tandem_aggregator_consumer_lag", (("partition", "0"), ("topic", "t.events")))] == 4
    assert samples[("tandem_aggregator_consumer_lag", (("partition", "1"), ("topic", "t.exposures")))] == 0


def test_before_the_first_status_every_counter_is_zero() -> None:
    samples = scraped({})
    assert samples[("tandem_aggregator_records_applied_total", ())] == 0
    assert samples[("tandem_aggregator_dead_letters_total", ())] == 0
    assert not any(name == "tandem_aggregator_consumer_lag" for name, _ in samples)
