"""Ad-hoc metrics in the owner's report: computed on DuckDB over the archive, shown with their
source, the spec version that added them and the event time they cover."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from experiments.batch.archive import Archive
from experiments.batch.engines import DuckDBEngine
from experiments.batch.recompute import recompute
from experiments.batch.specs import parse_metric
from experiments.lifecycle import add_batch_metric, apply_spec
from experiments.report.adhoc import adhoc_metrics, render_adhoc
from experiments.report.render import when
from experiments.spec import parse_spec, spec_to_json
from tests.unit.experiments.batch.logs import SPEC, T0, random_log, write_archive

NEW = {"name": "likes_5s", "role": "success", "kind": "mean", "direction": "increase", "measure": "likes",
       "window": {"length": "5s"}}


def test_a_batch_metric_is_computed_from_the_archive_with_its_source_version_and_time(tmp_path: Path) -> None:
    write_archive(random_log(3, users=40, records=900), tmp_path / "archive")
    settings = SimpleNamespace(archive=str(tmp_path / "archive"))
    v1 = apply_spec(None, SPEC, who="ana", at=T0)
    v2 = add_batch_metric(v1, parse_metric(NEW, v1, where="m.yaml")[1], who="ana", at=T0 + 1)
    adhoc = adhoc_metrics(settings, v2, versions=[v1, v2], allowed_lateness_ms=0)  # the log spans a minute
    assert adhoc is not None and adhoc.report is not None
    assert (adhoc.source, adhoc.engine, dict(adhoc.added_in)) == ("batch", "duckdb", {"likes_5s": 2})
    # The same figures as a spec that had the metric from the start, cut at the same place.
    archive = Archive(str(tmp_path / "archive"))
    watermark = DuckDBEngine().watermark(archive)
    assert (adhoc.watermark, adhoc.closed_upto, adhoc.covers_from) == (watermark, watermark, SPEC.start)
    scratch = parse_spec({**json.loads(spec_to_json(SPEC)), "metrics": [NEW]})
    expected = recompute(scratch, archive, engine=DuckDBEngine(), closed_upto=watermark)
    (metric,) = adhoc.report.analysis.metrics
    assert {v.name: (v.n, v.mean) for v in metric.variants} == {
        s.variant: (s.n, s.sum / s.n) for s in expected.stats}
    assert sum(v.n for v in metric.variants) > 10
    text = render_adhoc(adhoc)
    assert "source batch (duckdb over the archive" in text
    assert f"covers event time {when(SPEC.start)} to {when(adhoc.closed_upto)}" in text
    assert "likes_5s (mean, success, higher is better) [source batch, added in spec version 2]" in text
    assert adhoc.to_dict()["metrics"][0]["name"] == "likes_5s"


def test_no_batch_metric_no_section_and_an_empty_archive_says_so(tmp_path: Path) -> None:
    settings = SimpleNamespace(archive=str(tmp_path / "empty"))
    assert adhoc_metrics(settings, SPEC, versions=[SPEC]) is None
    data = json.loads(spec_to_json(SPEC))
    with_metric = parse_spec({**data, "metrics": [*data["metrics"], {**NEW, "source": "batch"}]})
    adhoc = adhoc_metrics(settings, with_metric, versions=[with_metric])
    assert adhoc is not None and adhoc.report is None and adhoc.closed_upto is None
    assert "likes_5s: nothing archived yet (run `tandem archive run`)" in render_adhoc(adhoc)
