"""The console's ``/metrics`` families: requests, refused writes, experiments by status, automatic stops."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from experiments.console.metrics import RequestCounts, console_families
from infra.metrics import exposition, registry


def scraped(counts: RequestCounts, statuses: list[str], stops: int) -> dict:
    text = exposition(registry(lambda: console_families(counts, statuses, stops))).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_responses_refusals_statuses_and_stops() -> None:
    counts = RequestCounts()
    counts.done("GET", "/api/experiments", 200)
    counts.done("GET", "/api/experiments", 200)
    counts.done("GET", "/api/experiments/{id}", 404)  # a read: not a refused write
    counts.done("POST", "/api/experiments/{id}/stop", 401)
    counts.done("POST", "/api/experiments/{id}/decide", 409)
    counts.done("POST", "/api/experiments", 422)
    counts.done("POST", "/api/experiments", 200)  # the route by status, whatever the method
    samples = scraped(counts, ["running", "running", "stopped"], 1)
    assert samples[("tandem_console_requests_total", (("route", "/api/experiments"), ("status", "200")))] == 3
    assert samples[("tandem_console_requests_total", (("route", "/api/experiments/{id}"), ("status", "404")))] == 1
    refused = {dict(labels)["status"]: v for (n, labels), v in samples.items()
               if n == "tandem_console_writes_refused_total"}
    assert refused == {"401": 1, "404": 0, "409": 1, "422": 1}
    by_status = {dict(labels)["status"]: v for (n, labels), v in samples.items() if n == "tandem_console_experiments"}
    assert by_status == {"draft": 0, "running": 2, "stopped": 1, "decided": 0}
    assert samples[("tandem_console_automatic_stops_total", ())] == 1
