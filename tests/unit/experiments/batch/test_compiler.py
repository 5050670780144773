"""The compiled SQL on DuckDB against the stream's definition of every metric (the oracle)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.batch.compiler import compile_experiment
from experiments.batch.engines import DuckDBEngine
from experiments.batch.errors import CompileError
from experiments.batch.recompute import recompute
from experiments.spec import Measure
from tests.unit.experiments.batch.logs import SPEC, T0, S, as_figures, oracle, random_log, write_archive


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    users=st.integers(1, 8),
    records=st.integers(0, 120),
    closed_at=st.integers(-10, 80),
)
def test_duckdb_equals_the_oracle(seed: int, users: int, records: int, closed_at: int) -> None:
    log = random_log(seed, users=users, records=records)
    closed_upto = T0 + closed_at * S
    with tempfile.TemporaryDirectory() as root:
        archive = write_archive(log, Path(root))
        result = recompute(SPEC, archive, engine=DuckDBEngine(threads=1), closed_upto=closed_upto)
    assert as_figures(result.stats) == oracle(SPEC, log, closed_upto)


def test_per_partition_cut_closes_each_partitions_users_at_its_own_instant(tmp_path: Path) -> None:
    log = random_log(5, users=8, records=150)
    archive = write_archive(log, tmp_path)
    early, late = T0 + 15 * S, T0 + 60 * S
    split = recompute(SPEC, archive, engine=DuckDBEngine(), closed_upto={0: early, 1: late})
    # Users of partition 0 (even numbers) cut early, of partition 1 late: the sums of two
    # oracles, each over its partition's users.
    def part(p: int) -> dict:
        return {topic: [item for item in items if item[0] == p] for topic, items in log.items()}
    zero, one = oracle(SPEC, part(0), early), oracle(SPEC, part(1), late)
    got = as_figures(split.stats)
    for key, figures in got.items():
        assert figures["n"] == zero[key]["n"] + one[key]["n"]
        assert figures["sum"] == zero[key]["sum"] + one[key]["sum"]


def test_a_measure_the_compiler_cannot_express_is_named_by_its_field() -> None:
    broken = SPEC.metrics[0].model_copy(update={"measure": Measure.model_construct(agg="median", types=None)})
    spec = SPEC.model_copy(update={"metrics": (broken, *SPEC.metrics[1:])})
    with pytest.raises(CompileError, match=r"metrics\[0\]\.measure\.agg: 'median' cannot be compiled"):
        compile_experiment(spec, closed_upto=T0)


def test_an_unknown_metric_name_is_refused() -> None:
    with pytest.raises(CompileError, match="metric: 'nope' not in experiment 'exp'"):
        compile_experiment(SPEC, closed_upto=T0, metrics=["nope"])


def test_a_subset_of_metrics_is_computed_alone(tmp_path: Path) -> None:
    log = random_log(3, users=5, records=100)
    archive = write_archive(log, tmp_path)
    result = recompute(SPEC, archive, engine=DuckDBEngine(), closed_upto=T0 + 70 * S, metrics=["ret"])
    assert {s.metric for s in result.stats} == {"ret"}
    expected = oracle(SPEC, log, T0 + 70 * S)
    assert as_figures(result.stats) == {k: v for k, v in expected.items() if k[1] == "ret"}
