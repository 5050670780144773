"""Stream = batch, on an archive and stream figures made to match (then made not to)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from experiments.batch.check import check
from experiments.batch.engines import DuckDBEngine
from experiments.batch.recompute import recompute
from experiments.batch.stream import StreamFigure
from tests.unit.experiments.batch.logs import SPEC, T0, S, random_log, write_archive

LATENESS = 2 * S


def stream_like(archive, watermark: int) -> dict[tuple[str, str], StreamFigure]:
    """What a faithful stream would publish at ``watermark``: the batch figures themselves,
    with each sum off by a rounding error well inside the tolerance."""
    result = recompute(SPEC, archive, engine=DuckDBEngine(), closed_upto=watermark - LATENESS)
    return {
        (s.variant, s.metric): StreamFigure(
            stats=dataclasses.replace(s, sum=s.sum * (1 + 1e-12)), watermarks={None: watermark}, late_records=0,
        )
        for s in result.stats
    }


def test_equal_figures_print_stream_equals_batch_per_metric(tmp_path: Path) -> None:
    archive = write_archive(random_log(4, users=8, records=200), tmp_path)
    figures = stream_like(archive, T0 + 50 * S)
    result = check(SPEC, figures, archive, engines=[DuckDBEngine()], allowed_lateness_ms=LATENESS)
    assert result.equal, result.lines()
    assert [line.split(":")[0] for line in result.lines()] == [m.name for m in SPEC.metrics]
    assert all(" stream = batch (duckdb; " in line for line in result.lines())


def test_a_difference_names_metric_variant_field_and_users(tmp_path: Path) -> None:
    archive = write_archive(random_log(4, users=8, records=200), tmp_path)
    figures = stream_like(archive, T0 + 50 * S)
    key = ("b", "plays")
    stats = figures[key].stats
    figures[key] = dataclasses.replace(figures[key], stats=dataclasses.replace(stats, n=stats.n + 2,
                                                                                sum_sq=stats.sum_sq + 1))
    result = check(SPEC, figures, archive, engines=[DuckDBEngine()], allowed_lateness_ms=LATENESS)
    assert not result.equal
    assert {(d.metric, d.variant, d.field, d.users) for d in result.differences} == {
        ("plays", "b", "n", 2), ("plays", "b", "sum_sq", 2)}
    assert "plays: stream != batch" in result.lines()[0]
    assert any(line.startswith("plays / b: n stream") and "(2 users involved)" in line for line in result.lines())


def test_a_missing_stream_record_is_a_difference(tmp_path: Path) -> None:
    archive = write_archive(random_log(4, users=8, records=200), tmp_path)
    figures = stream_like(archive, T0 + 50 * S)
    del figures[("a", "ret")]
    result = check(SPEC, figures, archive, engines=[DuckDBEngine()], allowed_lateness_ms=LATENESS)
    assert [(d.metric, d.variant, d.field) for d in result.differences] == [("ret", "a", "record")]
