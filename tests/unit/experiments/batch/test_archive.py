"""The archive's layout: resuming from what it holds, unfinished batches, bad files named by path."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from experiments.batch.archive import ARCHIVE_SCHEMA_VERSION, Archive, event_date, rows_of
from experiments.batch.engines import DuckDBEngine
from experiments.batch.errors import CorruptArchiveFile, NewerArchiveSchema
from experiments.batch.recompute import recompute
from streams.events import ListeningEvent
from tests.unit.experiments.batch.logs import SPEC, T0

DAY = 86_400_000


def events(first_offset: int, count: int, *, day: int = 0) -> list[tuple[int, int, ListeningEvent]]:
    return [
        (0, first_offset + i, ListeningEvent(event_id=f"e{first_offset + i}", user_id="u1", ts=T0 + day * DAY + i,
                                             type="play", item_id="i", ms_played=10))
        for i in range(count)
    ]


def test_a_batch_over_two_dates_is_two_files_named_by_its_offset_range(tmp_path: Path) -> None:
    archive = Archive(str(tmp_path))
    rows = list(rows_of(events(0, 3) + events(3, 2, day=1), "events"))
    paths = archive.write_batch("events", 0, 0, 4, rows)
    assert [Path(p).relative_to(tmp_path).as_posix() for p in paths] == [
        f"events/date={event_date(T0)}/p00000-{0:020d}-{4:020d}-of2.parquet",
        f"events/date={event_date(T0 + DAY)}/p00000-{0:020d}-{4:020d}-of2.parquet",
    ]
    footer = pq.read_metadata(paths[0]).metadata
    assert footer[b"tandem.archive_schema"] == str(ARCHIVE_SCHEMA_VERSION).encode()
    assert (footer[b"tandem.partition"], footer[b"tandem.first_offset"], footer[b"tandem.last_offset"]) == (
        b"0", b"0", b"4")
    assert archive.resume_offsets("events") == {0: 5}
    assert archive.read_table("events").num_rows == 5


def test_an_unfinished_batch_is_not_read_and_is_deleted_on_resume(tmp_path: Path) -> None:
    archive = Archive(str(tmp_path))
    archive.write_batch("events", 0, 0, 2, list(rows_of(events(0, 3), "events")))
    paths = archive.write_batch("events", 0, 3, 6, list(rows_of(events(3, 2) + events(5, 2, day=1), "events")))
    Path(paths[1]).unlink()  # the crash came between the batch's two files
    (Path(paths[0]).parent / ".p00000-x.parquet.tmp").write_bytes(b"half a file")
    assert archive.resume_offsets("events") == {0: 3}
    assert archive.read_table("events").column("event_id").to_pylist() == ["e0", "e1", "e2"]
    assert archive.resume_offsets("events", repair=True) == {0: 3}
    assert not Path(paths[0]).exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_corrupt_file_is_reported_by_its_path(tmp_path: Path) -> None:
    archive = Archive(str(tmp_path))
    (path,) = archive.write_batch("events", 1, 0, 2, list(rows_of(events(0, 3), "events")))
    Path(path).write_bytes(Path(path).read_bytes()[:40])  # truncated
    with pytest.raises(CorruptArchiveFile, match=rf"^{path}: not a readable Parquet file"):
        recompute(SPEC, archive, engine=DuckDBEngine(), closed_upto=T0)


def test_a_file_of_a_newer_schema_is_reported_by_its_path(tmp_path: Path) -> None:
    archive = Archive(str(tmp_path))
    (path,) = archive.write_batch("events", 0, 0, 2, list(rows_of(events(0, 3), "events")))
    table = pq.read_table(path)
    newer = {**table.schema.metadata, b"tandem.archive_schema": str(ARCHIVE_SCHEMA_VERSION + 1).encode()}
    pq.write_table(table.replace_schema_metadata(newer), path)
    with pytest.raises(NewerArchiveSchema, match=rf"^{path}: archive schema {ARCHIVE_SCHEMA_VERSION + 1} is newer"):
        archive.read_table("events")


def test_a_foreign_file_is_reported_by_its_path(tmp_path: Path) -> None:
    archive = Archive(str(tmp_path))
    stray = tmp_path / "events" / "date=2026-01-01" / "part-0.parquet"
    stray.parent.mkdir(parents=True)
    pq.write_table(pa.table({"x": [1]}), stray)
    with pytest.raises(CorruptArchiveFile, match=rf"^{stray}: not a file name the archiver writes"):
        archive.read_table("events")


def test_duckdb_reads_an_archive_through_any_pyarrow_filesystem(tmp_path: Path) -> None:
    # A filesystem that is not the local one (as S3 would be), rooted at the archive.
    from experiments.batch.recompute import recompute as batch
    from tests.unit.experiments.batch.logs import S, as_figures, oracle, random_log, write_archive

    log = random_log(4, users=8, records=200)
    write_archive(log, tmp_path)
    archive = Archive(str(tmp_path))
    archive.filesystem, archive.root = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), "."
    result = batch(SPEC, archive, engine=DuckDBEngine(), closed_upto=T0 + 50 * S)
    assert as_figures(result.stats) == oracle(SPEC, log, T0 + 50 * S)
