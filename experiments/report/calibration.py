"""The history of predicted against realized effects across decided experiments (``tandem report --calibration``).

Each decision record of an experiment that went through the evaluation gate holds its
calibration rows (``experiments.ope.calibration``); this lays them out, oldest decision
first, and counts how often the realized effect fell inside the predicted interval and
how often the two had the same sign.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any


def _pct(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:+.1f}%"


def calibration_table(decisions: Iterable[tuple[int, Iterable[Mapping[str, Any]]]]) -> str:
    """``decisions``: ``(decided_at, calibration rows)`` per decision record, in any order."""
    lines = [f"{'experiment':24} {'variant':12} {'metric':16} {'reward':10} {'predicted [interval]':32} "
             f"{'realized [interval]':32} covered"]
    covered = signs = total = 0
    for _, rows in sorted(decisions, key=lambda item: item[0]):
        for row in rows:
            predicted = f"{_pct(row['predicted'])} [{_pct(row['predicted_low'])}, {_pct(row['predicted_high'])}]"
            realized = f"{_pct(row['realized'])} [{_pct(row['realized_low'])}, {_pct(row['realized_high'])}]"
            lines.append(f"{row['experiment']:24} {row['variant']:12} {row['metric']:16} {row['reward']:10} "
                         f"{predicted:32} {realized:32} {row['covered'] if row['covered'] is not None else '-'}")
            if row["realized"] is not None:
                total += 1
                covered += bool(row["covered"])
                signs += math.copysign(1, row["predicted"]) == math.copysign(1, row["realized"])
    if total:
        lines.append(f"{total} predictions with a realized effect: {covered} inside the predicted interval, "
                     f"{signs} with the realized sign")
    else:
        lines.append("no decided experiment went through the evaluation gate yet")
    return "\n".join(lines)
