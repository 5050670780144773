"""The archiver's ``/metrics`` families, from a published status (no broker)."""

from __future__ import annotations

from dataclasses import asdict

from prometheus_client.parser import text_string_to_metric_families

from experiments.batch.archiver import ArchiverStats, archiver_families
from infra.metrics import exposition, registry


def test_the_published_status_is_what_a_scrape_reads() -> None:
    stats = ArchiverStats(records=60, dead_letters=1, batches=4, files=4, consumed={"t.events": 50, "t.decisions": 10},
                          archived={"t.events": 39, "t.decisions": 10}, pending=10)
    status = {**asdict(stats), "lag": {("t.events", 2): 3}}
    text = exposition(registry(lambda: archiver_families(status))).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("tandem_archiver_records_total", (("topic", "t.events"),))] == 50
    assert samples[("tandem_archiver_records_total", (("topic", "t.decisions"),))] == 10
    assert samples[("tandem_archiver_records_archived_total", (("topic", "t.events"),))] == 39
    assert samples[("tandem_archiver_files_written_total", ())] == 4
    assert samples[("tandem_archiver_batches_total", ())] == 4
    assert samples[("tandem_archiver_dead_letters_total", ())] == 1
    assert samples[("tandem_archiver_records_pending", ())] == 10
    assert samples[("tandem_archiver_consumer_lag", (("partition", "2"), ("topic", "t.events")))] == 3
