"""The batch path: the Parquet event archive, metrics compiled to SQL, DuckDB and Spark.

``Archiver`` (``tandem archive run``) writes ``events``, ``exposures`` and ``decisions`` to a
Parquet dataset, exactly once; ``compile_experiment`` turns an experiment's metrics into one
SQL query that DuckDB and Spark both run (``recompute``); ``check_experiment`` compares the
stream's figures with the archive's (``tandem experiments check``, the demo's last step);
``add_metric`` adds a metric to a running experiment as a new spec version on the experiments
topic, computed by the batch path only (``tandem report`` shows it: ``experiments.report.adhoc``).
Everything is imported on first use (pyarrow, DuckDB and Spark are heavy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from infra.lazy import lazy_exports

if TYPE_CHECKING:
    from experiments.batch.archive import Archive
    from experiments.batch.archiver import Archiver, ArchiverStats
    from experiments.batch.check import CheckResult, Difference, MetricCheck, check, check_experiment
    from experiments.batch.compiler import CompiledQuery, compile_experiment
    from experiments.batch.engines import DuckDBEngine, SparkEngine, engine, spark_session
    from experiments.batch.errors import (
        ArchiveFileError,
        BatchError,
        CompileError,
        CorruptArchiveFile,
        NewerArchiveSchema,
    )
    from experiments.batch.recompute import recompute
    from experiments.batch.results import BatchResult, MetricStats
    from experiments.batch.specs import SpecVersion, add_metric, added_versions
    from experiments.batch.stream import StreamFigure, read_stream_figures, stream_figures

__all__ = [
    "Archive",
    "ArchiveFileError",
    "Archiver",
    "ArchiverStats",
    "BatchError",
    "BatchResult",
    "CheckResult",
    "CompileError",
    "CompiledQuery",
    "CorruptArchiveFile",
    "Difference",
    "DuckDBEngine",
    "MetricCheck",
    "MetricStats",
    "NewerArchiveSchema",
    "SparkEngine",
    "SpecVersion",
    "StreamFigure",
    "add_metric",
    "added_versions",
    "check",
    "check_experiment",
    "compile_experiment",
    "engine",
    "read_stream_figures",
    "recompute",
    "spark_session",
    "stream_figures",
]

_LAZY = {
    "Archive": "experiments.batch.archive",
    "Archiver": "experiments.batch.archiver",
    "ArchiverStats": "experiments.batch.archiver",
    "CheckResult": "experiments.batch.check",
    "Difference": "experiments.batch.check",
    "MetricCheck": "experiments.batch.check",
    "check": "experiments.batch.check",
    "check_experiment": "experiments.batch.check",
    "CompiledQuery": "experiments.batch.compiler",
    "compile_experiment": "experiments.batch.compiler",
    "DuckDBEngine": "experiments.batch.engines",
    "SparkEngine": "experiments.batch.engines",
    "engine": "experiments.batch.engines",
    "spark_session": "experiments.batch.engines",
    "ArchiveFileError": "experiments.batch.errors",
    "BatchError": "experiments.batch.errors",
    "CompileError": "experiments.batch.errors",
    "CorruptArchiveFile": "experiments.batch.errors",
    "NewerArchiveSchema": "experiments.batch.errors",
    "recompute": "experiments.batch.recompute",
    "BatchResult": "experiments.batch.results",
    "MetricStats": "experiments.batch.results",
    "SpecVersion": "experiments.batch.specs",
    "add_metric": "experiments.batch.specs",
    "added_versions": "experiments.batch.specs",
    "StreamFigure": "experiments.batch.stream",
    "read_stream_figures": "experiments.batch.stream",
    "stream_figures": "experiments.batch.stream",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
