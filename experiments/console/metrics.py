"""The console's ``/metrics``: requests, refused writes, experiments by status, automatic stops.

The HTTP middleware counts each response in ``RequestCounts`` (plain dicts, on the event loop);
``console_families`` describes them with the followed state at scrape time. Nothing here reads
the bearer token.

>>> counts = RequestCounts()
>>> counts.done("POST", "/api/experiments/{id}/stop", 401)
>>> counts.refused
{401: 1}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import get_args

from prometheus_client.core import CounterMetricFamily, Metric

from experiments.spec import Status
from infra.metrics import counter, gauge

#: Statuses of a refused write: no or a wrong token, no such experiment, refused by the
#: lifecycle or the evaluation gate, an invalid body or spec.
REFUSED = (401, 404, 409, 422)
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RequestCounts:
    """Responses by (route, status), and refused writes by status."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.refused: dict[int, int] = {}

    def done(self, method: str, route: str, status: int) -> None:
        self.requests[(route, status)] = self.requests.get((route, status), 0) + 1
        if method in WRITES and status in REFUSED:
            self.refused[status] = self.refused.get(status, 0) + 1


def console_families(counts: RequestCounts, statuses: Iterable[str], automatic_stops: int) -> list[Metric]:
    """The console's figures; ``statuses`` holds each followed experiment's status."""
    by_route = CounterMetricFamily("tandem_console_requests", "HTTP requests by route and status",
                                   labels=["route", "status"])
    for (route, status), count in sorted(dict(counts.requests).items()):
        by_route.add_metric([route, str(status)], count)
    return [
        by_route,
        counter("tandem_console_writes_refused", "writes refused, by status (401 token, 404 unknown experiment, "
                "409 lifecycle or gate, 422 invalid body or spec)", _every(REFUSED, counts.refused), "status"),
        gauge("tandem_console_experiments", "experiments followed, by status", _tally(statuses), "status"),
        counter("tandem_console_automatic_stops", "running experiments the automatic stop stopped "
                "(0 with --no-monitor)", automatic_stops),
    ]


def _every(keys: Iterable[int], counts: Mapping[int, int]) -> dict[int, int]:
    """``counts`` with a 0 for each key it lacks, so a dashboard sees every series from the start."""
    return {key: counts.get(key, 0) for key in keys} | dict(counts)


def _tally(statuses: Iterable[str]) -> dict[str, int]:
    tally = dict.fromkeys(get_args(Status), 0)
    for status in statuses:
        tally[status] = tally.get(status, 0) + 1
    return tally
