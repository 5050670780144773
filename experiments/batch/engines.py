"""The engines that run a compiled query over the archive: DuckDB (embedded) and Spark.

Both register the archive's ``events`` and ``exposures`` under those names and run the
compiler's SQL as it is; every file is checked first (a corrupt file, or one of a newer
schema, raises with its path). Spark runs in local mode unless ``TANDEM_SPARK_MASTER`` names a
cluster; one session serves the whole process (a JVM start costs seconds).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

import pyarrow.dataset as pads
import pyarrow.fs as pafs

from experiments.batch.archive import SCHEMAS, Archive
from experiments.batch.compiler import CompiledQuery
from experiments.batch.errors import BatchError

logger = logging.getLogger(__name__)

#: The relations a compiled query reads.
INPUTS = ("events", "exposures")
ENGINES = ("duckdb", "spark")
#: The master when none is given (``TANDEM_SPARK_MASTER`` reaches here through the settings).
DEFAULT_SPARK_MASTER = "local[2]"


class Engine(Protocol):
    name: str

    def run(self, query: CompiledQuery, archive: Archive) -> list[dict[str, Any]]:
        """The query's rows, one dict per row keyed by its columns, sums as exact integers."""
        ...

    def watermark(self, archive: Archive) -> int | None:
        """The archive's watermark: the minimum over input partitions of the newest event time."""
        ...


_WATERMARK_SQL = """
SELECT MIN(newest) AS watermark FROM (
  SELECT kafka_partition, MAX(ts) AS newest FROM events GROUP BY kafka_partition
  UNION ALL
  SELECT kafka_partition, MAX(ts) AS newest FROM exposures GROUP BY kafka_partition
) partitions
"""


def _exact(value: Any) -> Any:
    """Decimals of whole numbers (both engines return DECIMAL(38, 0) sums so) as Python ints."""
    if isinstance(value, Decimal):
        return int(value)
    return value


class DuckDBEngine:
    name = "duckdb"

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = threads

    def _connect(self, archive: Archive) -> Any:
        import duckdb

        connection = duckdb.connect(":memory:")
        if self.threads is not None:
            connection.execute(f"SET threads = {int(self.threads)}")
        for topic in INPUTS:
            if not isinstance(archive.filesystem, pafs.LocalFileSystem):
                # S3 and the other pyarrow filesystems: DuckDB scans a pyarrow dataset over them.
                files = archive.checked_files(topic)
                dataset = pads.dataset(files, schema=SCHEMAS[topic], format="parquet", filesystem=archive.filesystem)
                relation = connection.from_arrow(dataset)
            else:
                paths = archive.local_paths(topic)
                relation = (connection.read_parquet(paths) if paths
                            else connection.from_arrow(SCHEMAS[topic].empty_table()))
            relation.create_view(topic)
        return connection

    def run(self, query: CompiledQuery, archive: Archive) -> list[dict[str, Any]]:
        connection = self._connect(archive)
        try:
            rows = connection.execute(query.sql).fetchall()
        except Exception as exc:  # duckdb's errors share no base class worth naming here
            raise BatchError(f"duckdb: the query of experiment {query.experiment!r} failed: {exc}") from exc
        finally:
            connection.close()
        return [dict(zip(query.columns, map(_exact, row), strict=True)) for row in rows]

    def watermark(self, archive: Archive) -> int | None:
        connection = self._connect(archive)
        try:
            (value,) = connection.execute(_WATERMARK_SQL).fetchone()
        finally:
            connection.close()
        return None if value is None else int(value)


@functools.cache
def spark_session(master: str | None = None) -> Any:
    """The process's Spark session (created on first use, reused after)."""
    from pyspark.sql import SparkSession

    master = master or DEFAULT_SPARK_MASTER
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # else it looks up the host's outside address
    builder = (
        SparkSession.builder.master(master)
        .appName("tandem-batch")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4" if master.startswith("local") else "200")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
    )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    logger.info("spark session on %s", master)
    return session


def _spark_schema(topic: str) -> Any:
    from pyspark.sql import types as T

    mapping = {"string": T.StringType(), "int64": T.LongType(), "int32": T.IntegerType(), "double": T.DoubleType()}
    fields = []
    for field in SCHEMAS[topic]:
        kind = str(field.type)
        spark_type = T.ArrayType(T.StringType()) if kind.startswith("list") else mapping[kind]
        fields.append(T.StructField(field.name, spark_type, field.nullable))
    return T.StructType(fields)


class SparkEngine:
    name = "spark"

    def __init__(self, *, master: str | None = None) -> None:
        self.master = master

    def _register(self, archive: Archive) -> Any:
        session = spark_session(self.master)
        for topic in INPUTS:
            paths = archive.local_paths(topic)
            schema = _spark_schema(topic)
            frame = session.read.schema(schema).parquet(*paths) if paths else session.createDataFrame([], schema)
            frame.createOrReplaceTempView(topic)
        return session

    def run(self, query: CompiledQuery, archive: Archive) -> list[dict[str, Any]]:
        session = self._register(archive)
        try:
            rows = session.sql(query.sql).collect()
        except Exception as exc:  # py4j and pyspark raise several unrelated types
            raise BatchError(f"spark: the query of experiment {query.experiment!r} failed: {exc}") from exc
        return [{name: _exact(row[name]) for name in query.columns} for row in rows]

    def watermark(self, archive: Archive) -> int | None:
        session = self._register(archive)
        value = session.sql(_WATERMARK_SQL).collect()[0]["watermark"]
        return None if value is None else int(value)


def engine(name: str, **options: Any) -> Engine:
    if name == "duckdb":
        return DuckDBEngine(**options)
    if name == "spark":
        return SparkEngine(**options)
    raise BatchError(f"engine: {name!r} is not one of {', '.join(ENGINES)}")


def engines(names: Sequence[str]) -> list[Engine]:
    return [engine(name) for name in names]
