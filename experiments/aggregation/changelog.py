"""A partition's state as a changelog: one delta per commit, compacted into a snapshot.

Writing the state of a partition as rows of typed tables cost two rows per event (its id and its
bucket), each built, bound and indexed one by one. Here a commit writes **one** row per partition
it changed: the net journal of the batch as a JSON document (``delta``). When the log holds
``COMPACT_FACTOR`` times the entries of the last snapshot (and at least ``COMPACT_MIN``), the
commit writes the partition's whole state instead (``snapshot``, a few rows) and deletes the
deltas: the log stays within that factor of the live state, and a snapshot's cost is spread over
twice as many delta entries as it writes. ``replay`` rebuilds the state from the rows in ``seq``
order: exactly the state that wrote them (the same ids, buckets, anchors, and the sums' terms as
they were added).

Entries of a delta or snapshot document (each optional):

==== ==========================================================================================
pe   event ids pruned (applied before ``e``: an id pruned and seen again is in both)
e    ``[event_id, user, ts]`` event ids remembered for dedupe
b    ``[user, bucket_start, type, n, ms_played, items, genres]`` a bucket's summary of one event
     type (a document names every type of a bucket it changes); ``[user, bucket_start]``: gone
px   (older logs) exposure ids pruned; read and ignored, no exposure id is remembered any more
x    (older logs) ``[exposure_id, ts]``; read and ignored
a    ``[experiment, user, variant, ts, exposure_id, multi]`` a first exposure
c    ``[experiment, variant, metric, value, den, pre]`` a closed window, added to the sums
s    ``[experiment, variant, metric, n, {field: terms}]`` the sums as a whole (snapshots)
l    ``{experiment: late records}``
p    ``[topic, partition, newest event time]``
==== ==========================================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from experiments.aggregation.state import AggregationState, Anchor, Journal
from experiments.aggregation.stats import SufficientStats
from experiments.aggregation.watermark import Partition
from experiments.aggregation.windows import Contribution, TypeSummary

#: No snapshot before the changelog holds this many entries: small states are not rewritten often.
COMPACT_MIN = 100_000
#: A snapshot once the changelog holds this many times the entries of the last one: the log stays
#: within that factor of the state, and each delta entry costs 1 / (factor - 1) rewritten entries.
COMPACT_FACTOR = 3
#: Entries per snapshot row.
CHUNK = 20_000


def dumps(document: dict[str, Any]) -> str:
    return orjson.dumps(document).decode("utf-8")


def delta(state: AggregationState, journal: Journal) -> tuple[dict[str, Any], int]:
    """The document of one commit's changes, and how many entries it holds."""
    doc: dict[str, Any] = {}
    if journal.pruned_events:
        doc["pe"] = journal.pruned_events
    if journal.events:
        events = state.events
        doc["e"] = [[i, events[i].user_id, ts] for i, ts in journal.events.items()]
    if journal.buckets:
        buckets = state.buckets
        rows: list[list[Any]] = []
        for user, start in journal.buckets:  # about one per event at 1 ms: no throwaway dict, no generator
            user_buckets = buckets.get(user)
            bucket = None if user_buckets is None else user_buckets.get(start)
            if bucket is None:
                rows.append([user, start])
            else:
                for etype, summary in bucket.items():
                    rows.append([user, start, etype, *summary.to_row()])
        doc["b"] = rows
    if journal.anchors:
        doc["a"] = [_anchor_row(e, u, state.anchors[e][u]) for e, u in journal.anchors]
    if journal.contributions:
        doc["c"] = [[e, v, m, *c] for e, _, m, v, c in journal.contributions]
    if journal.late:
        doc["l"] = {e: state.late[e] for e in journal.late}
    if journal.partitions:
        doc["p"] = [[t, p, state.tracker.partitions[(t, p)]] for t, p in journal.partitions]
    return doc, sum(len(v) for v in doc.values())


def snapshot(state: AggregationState) -> tuple[list[dict[str, Any]], int]:
    """The documents of a partition's whole state (in rows of at most ``CHUNK`` entries), and
    how many entries they hold."""
    entries: dict[str, list[Any]] = {
        "e": [[i, seen.user_id, seen.ts] for i, seen in state.events.items()],
        "b": [
            [user, start, etype, *summary.to_row()]
            for user, buckets in state.buckets.items() for start, bucket in buckets.items()
            for etype, summary in bucket.items()
        ],
        "a": [_anchor_row(e, u, a) for e, users in state.anchors.items() for u, a in users.items()],
        "s": [[e, v, m, s.n, s.terms()] for (e, v, m), s in state.stats.items()],
        "p": [[t, p, ts] for (t, p), ts in state.tracker.partitions.items()],
    }
    documents: list[dict[str, Any]] = [{"l": dict(state.late)}]
    for key, rows in entries.items():
        documents.extend({key: rows[i:i + CHUNK]} for i in range(0, len(rows), CHUNK))
    return documents, sum(len(rows) for rows in entries.values()) + len(state.late)


def _anchor_row(experiment: str, user: str, anchor: Anchor) -> list[Any]:
    return [experiment, user, anchor.variant, anchor.ts, anchor.exposure_id, int(anchor.multi)]


@dataclass
class Restored:
    """A partition's state as its changelog left it, ready for ``AggregationState.load``."""

    events: dict[str, tuple[str, int]] = field(default_factory=dict)
    buckets: dict[tuple[str, int], dict[str, list[Any]]] = field(default_factory=dict)
    anchors: dict[tuple[str, str], Anchor] = field(default_factory=dict)
    stats: dict[tuple[str, str, str], SufficientStats] = field(default_factory=dict)
    late: dict[str, int] = field(default_factory=dict)
    partitions: dict[Partition, int | None] = field(default_factory=dict)
    #: Entries read: the size the next snapshot is compared against.
    entries: int = 0

    def apply(self, doc: dict[str, Any]) -> None:
        events, buckets = self.events, self.buckets
        for i in doc.get("pe", ()):
            events.pop(i, None)
        for i, user, ts in doc.get("e", ()):
            events[i] = (user, ts)
        written: set[tuple[str, int]] = set()  # a document holds every type of a bucket it names
        for row in doc.get("b", ()):
            key = (row[0], row[1])
            if len(row) == 2:
                buckets.pop(key, None)
            else:
                if key not in written:
                    written.add(key)
                    buckets[key] = {}
                buckets[key][row[2]] = row[3:]
        for e, u, variant, ts, exposure_id, multi in doc.get("a", ()):
            self.anchors[(e, u)] = Anchor(variant, ts, exposure_id, bool(multi))
        for e, v, m, value, den, pre in doc.get("c", ()):
            self.stats.setdefault((e, v, m), SufficientStats()).add(Contribution(value, den, pre))
        for e, v, m, n, terms in doc.get("s", ()):
            self.stats[(e, v, m)] = SufficientStats.restore(n, terms)
        self.late.update(doc.get("l", {}))
        for t, p, ts in doc.get("p", ()):
            self.partitions[(t, p)] = ts
        self.entries += sum(len(v) for v in doc.values())


def replay(payloads: Iterable[str]) -> Restored:
    """Apply the documents of a partition in ``seq`` order."""
    restored = Restored()
    for payload in payloads:
        restored.apply(orjson.loads(payload))
    return restored


def bucket_rows(restored: Restored) -> Iterator[tuple[str, int, str, TypeSummary]]:
    for (user, start), row in restored.buckets.items():
        for etype, summary in row.items():
            yield user, start, etype, TypeSummary.from_row(summary)
