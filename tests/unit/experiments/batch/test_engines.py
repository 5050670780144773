"""The same SQL on Spark and on DuckDB: identical figures, both equal to the oracle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from experiments.batch.engines import DuckDBEngine, SparkEngine, engine
from experiments.batch.errors import BatchError
from experiments.batch.recompute import recompute
from tests.unit.experiments.batch.logs import SPEC, T0, S, as_figures, oracle, random_log, write_archive


@pytest.mark.parametrize("seed", [1, 3])
def test_spark_and_duckdb_equal_the_oracle(spark: Any, tmp_path: Path, seed: int) -> None:
    log = random_log(seed, users=10, records=300)
    archive = write_archive(log, tmp_path)
    closed_upto = T0 + (20 + 15 * seed) * S
    expected = oracle(SPEC, log, closed_upto)
    assert any(figures["n"] > 0 for figures in expected.values())
    on_duckdb = recompute(SPEC, archive, engine=DuckDBEngine(), closed_upto=closed_upto)
    on_spark = recompute(SPEC, archive, engine=SparkEngine(), closed_upto=closed_upto)
    assert as_figures(on_spark.stats) == as_figures(on_duckdb.stats) == expected
    assert (on_spark.engine, on_duckdb.engine) == ("spark", "duckdb")


def test_both_engines_find_the_same_watermark(spark: Any, tmp_path: Path) -> None:
    log = random_log(9, users=10, records=200)
    archive = write_archive(log, tmp_path)
    newest: dict[tuple[str, int], int] = {}
    for topic, items in log.items():
        for partition, _, record in items:
            newest[(topic, partition)] = max(newest.get((topic, partition), 0), record.ts)  # type: ignore[attr-defined]
    assert DuckDBEngine().watermark(archive) == SparkEngine().watermark(archive) == min(newest.values())


def test_an_empty_archive_gives_zeros_on_both(spark: Any, tmp_path: Path) -> None:
    archive = write_archive({"events": [], "exposures": []}, tmp_path)
    for name in ("duckdb", "spark"):
        result = recompute(SPEC, archive, engine=engine(name))
        assert result.watermark is None
        assert all(s.n == 0 and s.exposed == 0 and s.sum == 0.0 for s in result.stats)


def test_an_unknown_engine_is_named() -> None:
    with pytest.raises(BatchError, match="engine: 'presto' is not one of duckdb, spark"):
        engine("presto")
