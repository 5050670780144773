"""Experiment reports for owners: build a :class:`Report` from ``experiment-metrics`` records, render it,
and ``tandem report EXPERIMENT`` (:func:`run_report`) to write the table, JSON and PNGs;
``tandem report --calibration`` (:func:`calibration_table`): predicted against realized effects."""

from experiments.report.calibration import calibration_table
from experiments.report.owner import ReportFiles, UnknownExperiment, history, read_spec, report_spec, run_report
from experiments.report.render import (
    Report,
    VariantExposure,
    build_report,
    render_table,
    write_lift_over_time_png,
    write_lift_png,
)

__all__ = [
    "Report", "ReportFiles", "UnknownExperiment", "VariantExposure", "build_report", "history", "read_spec",
    "render_table", "report_spec", "run_report", "write_lift_over_time_png", "write_lift_png",
    "calibration_table",
]
