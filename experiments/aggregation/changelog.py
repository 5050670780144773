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
pe   event ids pruned (applied before ``E``: an id pruned and seen again is in both)
E    ``{user: [[event_id, ts], ...]}`` event ids remembered for dedupe
Bg   ``[step, {user: {type: [[gap, n, ms_played(, items, genres)], ...], "": [gap, ...]}}]``
     buckets: per user, each event type's summaries (the item and genre sets only when not
     empty); under ``""`` the buckets gone. A bucket's start is ``step`` times the sum of the
     gaps of its list up to its own: a user's buckets are days apart, so a gap is a digit or two
     where the day number took five. A document names every type of a bucket it changes.
     ``step`` divides every bucket start of the document (the resolution)
A    ``{experiment: [[user, variant, ts, exposure_id, multi], ...]}`` first exposures
c    ``[experiment, variant, metric, value, den, pre]`` a closed window, added to the sums
s    ``[experiment, variant, metric, n, {field: terms}]`` the sums as a whole (snapshots)
l    ``{experiment: late records}``
p    ``[topic, partition, newest event time]``
==== ==========================================================================================

A user's rows are grouped under the user, and a bucket start is written as its distance from the
previous one in resolutions: a day's bucket of one event type, the day after the last, is
``[1, 3, 243817]``, where a row per bucket repeating the user, the millisecond start and the
empty sets took four times that. Logs written before that still load: ``B`` (the same with
each start as a multiple of ``step``), ``e``, ``b``, ``a`` (one row per entry), and exposure ids
from when they were kept (``x``, ``px``: read and ignored).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter
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
    entries = 0
    if journal.pruned_events:
        doc["pe"] = journal.pruned_events
        entries += len(journal.pruned_events)
    if journal.events:
        events = state.events
        doc["E"] = _by_user((events[i].user_id, [i, ts]) for i, ts in journal.events.items())
        entries += len(journal.events)
    if journal.buckets:
        doc["Bg"], written = _bucket_document(state.buckets, journal.buckets, state.resolution_ms)
        entries += written
    if journal.anchors:
        anchors = state.anchors
        doc["A"] = _anchor_document((e, u, anchors[e][u]) for e, u in journal.anchors)
        entries += len(journal.anchors)
    if journal.contributions:
        doc["c"] = [[e, v, m, *c] for e, _, m, v, c in journal.contributions]
        entries += len(doc["c"])
    if journal.late:
        doc["l"] = {e: state.late[e] for e in journal.late}
        entries += len(doc["l"])
    if journal.partitions:
        doc["p"] = [[t, p, state.tracker.partitions[(t, p)]] for t, p in journal.partitions]
        entries += len(doc["p"])
    return doc, entries


def snapshot(state: AggregationState) -> tuple[list[dict[str, Any]], int]:
    """The documents of a partition's whole state (each of about ``CHUNK`` entries at most), and
    how many entries they hold."""
    buckets, resolution_ms = state.buckets, state.resolution_ms
    parts: list[tuple[str, list[Any], Callable[[list[Any]], Any], Callable[[Any], int] | None]] = [
        ("E", [(seen.user_id, [i, seen.ts]) for i, seen in state.events.items()], _by_user, None),
        ("Bg", list(buckets), lambda users: _bucket_document(buckets, _starts_of(buckets, users), resolution_ms)[0],
         lambda user: sum(len(bucket) for bucket in buckets[user].values())),
        ("A", [(e, u, a) for e, users in state.anchors.items() for u, a in users.items()], _anchor_document, None),
        ("s", [[e, v, m, s.n, s.terms()] for (e, v, m), s in state.stats.items()], list, None),
        ("p", [[t, p, ts] for (t, p), ts in state.tracker.partitions.items()], list, None),
    ]
    documents: list[dict[str, Any]] = [{"l": dict(state.late)}]
    entries = len(state.late)
    for key, rows, encode, size_of in parts:
        for chunk, held in _chunks(rows, size_of):
            documents.append({key: encode(chunk)})
            entries += held
    return documents, entries


def _chunks(rows: list[Any], size_of: Callable[[Any], int] | None) -> Iterator[tuple[list[Any], int]]:
    """Consecutive runs of ``rows`` holding about ``CHUNK`` entries each (a row holds
    ``size_of(row)``, or one), with how many they hold."""
    chunk: list[Any] = []
    held = 0
    for row in rows:
        chunk.append(row)
        held += 1 if size_of is None else size_of(row)
        if held >= CHUNK:
            yield chunk, held
            chunk, held = [], 0
    if chunk:
        yield chunk, held


def _starts_of(buckets: dict[str, dict[int, Any]], users: list[str]) -> list[tuple[str, int]]:
    return [(user, start) for user in users for start in buckets[user]]


def _by_user(rows: Iterable[tuple[str, list[Any]]]) -> dict[str, list[list[Any]]]:
    grouped: dict[str, list[list[Any]]] = {}
    for user, row in rows:
        grouped.setdefault(user, []).append(row)
    return grouped


def _bucket_document(
    buckets: dict[str, dict[int, Any]], changed: Iterable[tuple[str, int]], resolution_ms: int,
) -> tuple[list[Any], int]:
    """``[step, {user: {type: rows, "": gaps of the starts gone}}]`` for the (user, start) pairs
    changed, and how many summaries it holds. The step is the resolution, unless a start is no
    multiple of it (a state kept at another resolution): then a divisor of every start."""
    changed = list(changed)
    step = math.gcd(resolution_ms, *(start for _, start in changed))
    users: dict[str, dict[str, list[Any]]] = {}
    written = 0
    for user, start in changed:  # about one per event at 1 ms: no throwaway containers
        by_type = users.get(user)
        if by_type is None:
            by_type = users[user] = {}
        user_buckets = buckets.get(user)
        bucket = None if user_buckets is None else user_buckets.get(start)
        if bucket is None:
            by_type.setdefault("", []).append(start // step)
            continue
        for etype, summary in bucket.items():
            row = summary.to_row()
            if not row[2] and not row[3]:
                del row[2:]
            row.insert(0, start // step)
            rows = by_type.get(etype)
            if rows is None:
                by_type[etype] = [row]
            else:
                rows.append(row)
            written += 1
    for by_type in users.values():  # each list in time order, its starts as gaps (``changed`` is a set's order)
        for etype, rows in by_type.items():
            if len(rows) > 1:
                if etype:
                    rows.sort(key=itemgetter(0))
                    for i in range(len(rows) - 1, 0, -1):
                        rows[i][0] -= rows[i - 1][0]
                else:
                    rows.sort()
                    rows[1:] = [b - a for a, b in zip(rows, rows[1:], strict=False)]
    return [step, users], written


def _anchor_document(anchors: Iterable[tuple[str, str, Anchor]]) -> dict[str, list[list[Any]]]:
    grouped: dict[str, list[list[Any]]] = {}
    for experiment, user, anchor in anchors:
        row = [user, anchor.variant, anchor.ts, anchor.exposure_id, int(anchor.multi)]
        rows = grouped.get(experiment)
        if rows is None:
            grouped[experiment] = [row]
        else:
            rows.append(row)
    return grouped


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
        events, buckets, anchors = self.events, self.buckets, self.anchors
        entries = 0
        for i in doc.get("pe", ()):
            events.pop(i, None)
        for user, rows in doc.get("E", {}).items():
            for i, ts in rows:
                events[i] = (user, ts)
            entries += len(rows)
        for i, user, ts in doc.get("e", ()):  # older logs
            events[i] = (user, ts)
        for entry, gaps in (("Bg", True), ("B", False)):  # "B": older logs, absolute starts
            if entry not in doc:
                continue
            step, users = doc[entry]
            for user, by_type in users.items():
                at = 0
                for start in by_type.get("", ()):
                    at = at + start if gaps else start
                    buckets.pop((user, at * step), None)
                reset: set[int] = set()  # a document holds every type of a bucket it names
                for etype, rows in by_type.items():
                    if not etype:
                        continue
                    at = 0
                    for row in rows:
                        at = at + row[0] if gaps else row[0]
                        bucket_key = (user, at * step)
                        if at not in reset:
                            reset.add(at)
                            buckets[bucket_key] = {}
                        buckets[bucket_key][etype] = row[1:] if len(row) > 3 else [row[1], row[2], [], []]
                    entries += len(rows)
        written: set[tuple[str, int]] = set()
        for row in doc.get("b", ()):  # older logs
            key = (row[0], row[1])
            if len(row) == 2:
                buckets.pop(key, None)
            else:
                if key not in written:
                    written.add(key)
                    buckets[key] = {}
                buckets[key][row[2]] = row[3:]
        for e, rows in doc.get("A", {}).items():
            for u, variant, ts, exposure_id, multi in rows:
                anchors[(e, u)] = Anchor(variant, ts, exposure_id, bool(multi))
            entries += len(rows)
        for e, u, variant, ts, exposure_id, multi in doc.get("a", ()):  # older logs
            anchors[(e, u)] = Anchor(variant, ts, exposure_id, bool(multi))
        for e, v, m, value, den, pre in doc.get("c", ()):
            self.stats.setdefault((e, v, m), SufficientStats()).add(Contribution(value, den, pre))
        for e, v, m, n, terms in doc.get("s", ()):
            self.stats[(e, v, m)] = SufficientStats.restore(n, terms)
        self.late.update(doc.get("l", {}))
        for t, p, ts in doc.get("p", ()):
            self.partitions[(t, p)] = ts
        self.entries += entries + sum(len(doc.get(k, ())) for k in ("pe", "e", "b", "a", "c", "s", "l", "p", "x", "px"))


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
