"""The event archive: ``events``, ``exposures`` and ``decisions`` as a Parquet dataset.

Layout (Hive style, one folder per topic, then per event date)::

    <root>/events/date=2026-01-05/p00003-00000000000000000120-00000000000000000450-of2.parquet

A file holds the records of one topic partition from one offset range ``[first, last]`` (the
polled batch it was written from) whose event time falls on that date; a batch spread over
``n`` dates is ``n`` files, each named ``-of<n>``. The name alone says what the dataset holds,
so a restarted archiver resumes at ``last + 1`` of the newest complete batch of each partition
and deletes the files of a batch it did not finish (fewer than ``n`` present): no gap, no
duplicate. Files are written under a hidden temporary name and renamed into place. The footer
carries the same facts (``tandem.*`` metadata) and the archive schema version.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from experiments.batch.errors import CorruptArchiveFile, NewerArchiveSchema

#: Written into every file's footer; a reader refuses files of a newer version.
ARCHIVE_SCHEMA_VERSION = 1
COMPRESSION = "zstd"

_PROVENANCE = [
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
]

#: The archived topics (by their name before the prefix) and the columns of their files.
SCHEMAS: dict[str, pa.Schema] = {
    "events": pa.schema([
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("item_id", pa.string()),
        pa.field("genre", pa.string()),
        pa.field("ms_played", pa.int64(), nullable=False),
        *_PROVENANCE,
    ]),
    "exposures": pa.schema([
        pa.field("exposure_id", pa.string(), nullable=False),
        pa.field("experiment", pa.string(), nullable=False),
        pa.field("variant", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),
        *_PROVENANCE,
    ]),
    "decisions": pa.schema([
        pa.field("decision_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("ts", pa.int64(), nullable=False),
        pa.field("policy", pa.string(), nullable=False),
        pa.field("policy_version", pa.int64(), nullable=False),
        pa.field("arm", pa.string(), nullable=False),
        pa.field("propensity", pa.float64(), nullable=False),
        pa.field("arms", pa.list_(pa.string()), nullable=False),
        pa.field("context", pa.string(), nullable=False),  # JSON object, feature name -> number
        pa.field("assignments", pa.string(), nullable=False),  # JSON object, experiment -> variant
        *_PROVENANCE,
    ]),
}
#: The id column of each archived topic: what "exactly once" is checked on.
RECORD_ID = {"events": "event_id", "exposures": "exposure_id", "decisions": "decision_id"}

_NAME = re.compile(r"^p(\d{5})-(\d{20})-(\d{20})-of(\d+)\.parquet$")


@dataclass(frozen=True, order=True)
class ArchiveFile:
    """One file of the dataset, as its path says."""

    topic: str
    partition: int
    first: int
    last: int
    of: int
    date: str
    path: str


def file_name(partition: int, first: int, last: int, of: int) -> str:
    return f"p{partition:05d}-{first:020d}-{last:020d}-of{of}.parquet"


def event_date(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def open_filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the root path in it, for a local path or any URL pyarrow knows
    (``s3://bucket/prefix``, ``gs://``, ``hdfs://``)."""
    if "://" not in url:
        local = pafs.LocalFileSystem()
        from pathlib import Path

        return local, str(Path(url).resolve())
    filesystem, path = pafs.FileSystem.from_uri(url)
    return filesystem, path.rstrip("/")


def to_table(topic: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows (decoded records plus ``kafka_partition`` and ``kafka_offset``) as a table of the topic's schema."""
    schema = SCHEMAS[topic]
    columns = [pa.array([row[field.name] for row in rows], type=field.type) for field in schema]
    return pa.Table.from_arrays(columns, schema=schema)


class Archive:
    """The dataset under one root: list, write and check its files."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.filesystem, self.root = open_filesystem(url)

    def topic_dir(self, topic: str) -> str:
        return f"{self.root}/{topic}"

    # ---- the broker log the dataset's offsets refer to (infra.kafka.incarnation) -------------
    @property
    def incarnation_path(self) -> str:
        return f"{self.root}/_incarnation.json"

    def incarnation(self) -> str | None:
        """The id of the broker log whose offsets the archived batches are named by (None: not recorded)."""
        if self.filesystem.get_file_info(self.incarnation_path).type != pafs.FileType.File:
            return None
        with self.filesystem.open_input_stream(self.incarnation_path) as source:
            return str(json.loads(source.read())["incarnation"])

    def record_incarnation(self, incarnation: str) -> None:
        self.filesystem.create_dir(self.root, recursive=True)
        with self.filesystem.open_output_stream(self.incarnation_path) as sink:
            sink.write(json.dumps({"incarnation": incarnation}).encode())

    # ---- listing ----------------------------------------------------------------------------
    def files(self, topic: str) -> list[ArchiveFile]:
        """Every finished file of a topic (hidden temporary files excluded), sorted."""
        selector = pafs.FileSelector(self.topic_dir(topic), recursive=True, allow_not_found=True)
        found = []
        for info in self.filesystem.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            name = info.base_name
            if name.startswith((".", "_")):
                continue
            match = _NAME.match(name)
            parent = info.path.rsplit("/", 2)[-2] if info.path.count("/") >= 2 else ""
            if match is None or not parent.startswith("date="):
                raise CorruptArchiveFile(info.path, "not a file name the archiver writes "
                                         "(p<partition>-<first>-<last>-of<n>.parquet under date=YYYY-MM-DD/)")
            partition, first, last, of = (int(group) for group in match.groups())
            found.append(ArchiveFile(topic, partition, first, last, of, parent.removeprefix("date="), info.path))
        return sorted(found)

    def resume_offsets(self, topic: str, *, repair: bool = False) -> dict[int, int]:
        """The next offset to archive of each partition that has files: ``last + 1`` of its newest
        complete batch. With ``repair``, the files of an unfinished batch (a crash while writing
        it) and leftover temporary files are deleted, so the batch is written again whole."""
        batches: dict[tuple[int, int, int], list[ArchiveFile]] = {}
        for item in self.files(topic):
            batches.setdefault((item.partition, item.first, item.last), []).append(item)
        resume: dict[int, int] = {}
        for (partition, _first, last), items in sorted(batches.items()):
            if len(items) >= items[0].of:
                resume[partition] = max(resume.get(partition, 0), last + 1)
            elif repair:
                for item in items:
                    self.filesystem.delete_file(item.path)
        if repair:
            self._delete_temporary(topic)
        return resume

    def _delete_temporary(self, topic: str) -> None:
        selector = pafs.FileSelector(self.topic_dir(topic), recursive=True, allow_not_found=True)
        for info in self.filesystem.get_file_info(selector):
            if info.type == pafs.FileType.File and info.base_name.startswith(".") and info.base_name.endswith(".tmp"):
                self.filesystem.delete_file(info.path)

    # ---- writing ----------------------------------------------------------------------------
    def write_batch(self, topic: str, partition: int, first: int, last: int,
                    rows: list[dict[str, Any]] | pa.Table) -> list[str]:
        """Write the records of one partition's offset range ``[first, last]`` (rows, or a table of
        the topic's schema), one file per event date; returns the paths. The batch counts as
        archived once all its files exist."""
        table = rows if isinstance(rows, pa.Table) else to_table(topic, rows)
        if table.num_rows == 0:
            return []
        days = pc.strftime(pc.cast(table.column("ts"), pa.timestamp("ms", tz="UTC")), format="%Y-%m-%d")
        order = pc.sort_indices(days)
        table, days = table.take(order), days.take(order)
        # One pass: the rows of each date are one run of the sorted table.
        runs = pc.run_end_encode(days.combine_chunks() if isinstance(days, pa.ChunkedArray) else days)
        ends = runs.run_ends.to_pylist()
        dates = runs.values.to_pylist()
        starts = [0, *ends[:-1]]
        return [
            self.write_file(topic, partition, first, last, table.slice(start, end - start), date=date,
                            of=len(dates))
            for date, start, end in zip(dates, starts, ends, strict=True)
        ]

    def write_file(self, topic: str, partition: int, first: int, last: int, table: pa.Table, *, date: str,
                   of: int) -> str:
        """One file of a batch of ``of`` files: the batch's rows of one event date, as a table of
        the topic's schema. Written under a hidden name, then renamed into place."""
        directory = f"{self.topic_dir(topic)}/date={date}"
        name = file_name(partition, first, last, of)
        self.filesystem.create_dir(directory, recursive=True)
        final, temporary = f"{directory}/{name}", f"{directory}/.{name}.tmp"
        metadata = {
            b"tandem.archive_schema": str(ARCHIVE_SCHEMA_VERSION).encode(),
            b"tandem.topic": topic.encode(),
            b"tandem.partition": str(partition).encode(),
            b"tandem.first_offset": str(first).encode(),
            b"tandem.last_offset": str(last).encode(),
            b"tandem.files_in_batch": str(of).encode(),
        }
        table = table.cast(SCHEMAS[topic]).replace_schema_metadata(metadata)
        with self.filesystem.open_output_stream(temporary) as sink:
            pq.write_table(table, sink, compression=COMPRESSION)
        self.filesystem.move(temporary, final)
        return final

    # ---- reading ----------------------------------------------------------------------------
    def checked_files(self, topic: str) -> list[str]:
        """Paths of the topic's files after reading each footer: a corrupt file or one of a newer
        schema raises with its path; the files of an unfinished batch are left out (the
        archiver rewrites that batch when it resumes)."""
        complete: dict[tuple[int, int, int], list[ArchiveFile]] = {}
        for item in self.files(topic):
            complete.setdefault((item.partition, item.first, item.last), []).append(item)
        paths = []
        for items in complete.values():
            if len(items) < items[0].of:
                continue
            for item in items:
                check_file(self.filesystem, item.path, topic)
                paths.append(item.path)
        return sorted(paths)

    def read_table(self, topic: str) -> pa.Table:
        """The whole topic as one table (tests and small archives)."""
        tables = [self._read(path) for path in self.checked_files(topic)]
        if not tables:
            return SCHEMAS[topic].empty_table()
        return pa.concat_tables(tables)

    def _read(self, path: str) -> pa.Table:
        with self.filesystem.open_input_file(path) as source:
            return pq.read_table(source).replace_schema_metadata(None)

    def local_paths(self, topic: str) -> list[str]:
        """Paths an engine can open: local paths as they are, others as ``scheme://path``."""
        paths = self.checked_files(topic)
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            return paths
        scheme = self.url.split("://", 1)[0]
        return [f"{scheme}://{path}" for path in paths]


def check_file(filesystem: pafs.FileSystem, path: str, topic: str) -> None:
    """Read the footer: raise ``CorruptArchiveFile`` or ``NewerArchiveSchema`` naming the path."""
    try:
        with filesystem.open_input_file(path) as source:
            metadata = pq.read_metadata(source)
    except (OSError, pa.ArrowException) as exc:
        raise CorruptArchiveFile(path, f"not a readable Parquet file ({exc})") from None
    facts = metadata.metadata or {}
    raw = facts.get(b"tandem.archive_schema")
    if raw is None:
        raise CorruptArchiveFile(path, "no tandem.archive_schema in its footer: not written by the archiver")
    try:
        version = int(raw)
    except ValueError:
        raise CorruptArchiveFile(path, f"tandem.archive_schema is {raw!r}, not a number") from None
    if version > ARCHIVE_SCHEMA_VERSION:
        raise NewerArchiveSchema(
            path, f"archive schema {version} is newer than {ARCHIVE_SCHEMA_VERSION}, the newest this version reads"
        )
    if facts.get(b"tandem.topic", b"").decode() != topic:
        raise CorruptArchiveFile(path, f"its footer says topic {facts.get(b'tandem.topic')!r}, it lies under {topic!r}")
    names = set(metadata.schema.to_arrow_schema().names)
    missing = [name for name in SCHEMAS[topic].names if name not in names]
    if missing:
        raise CorruptArchiveFile(path, f"columns missing: {', '.join(missing)}")


def rows_of(records: Iterable[tuple[int, int, Any]], topic: str) -> Iterator[dict[str, Any]]:
    """(partition, offset, decoded record) → archive rows of the topic's schema."""
    names = [name for name in SCHEMAS[topic].names if name not in ("kafka_partition", "kafka_offset")]
    for partition, offset, record in records:
        # Attributes read directly: model_dump costs as much as the validation did.
        row = {name: getattr(record, name) for name in names}
        if topic == "events":
            row["type"] = row["type"].value
        elif topic == "decisions":
            row["context"] = json.dumps(row["context"], sort_keys=True)
            row["assignments"] = json.dumps(row["assignments"], sort_keys=True)
        row["kafka_partition"] = partition
        row["kafka_offset"] = offset
        yield row
