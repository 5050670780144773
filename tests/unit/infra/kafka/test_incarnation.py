"""The incarnation guard's decisions, without a broker (the integration tests restart a real one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import StaleState, TandemError
from infra.kafka.incarnation import Incarnation, MarkerFile, check_incarnation, check_offsets

NOW = Incarnation(id="new-log", created_at_ms=2)


def test_state_of_the_same_log_or_without_a_marker_passes() -> None:
    check_incarnation(consumer="the aggregator", state="db", stored="new-log", current=NOW)
    check_incarnation(consumer="the aggregator", state="db", stored=None, current=NOW)


def test_state_of_another_log_is_refused_naming_state_logs_and_offsets() -> None:
    with pytest.raises(StaleState) as refused:
        check_incarnation(consumer="the aggregator", state="/s/experiments.db", stored="old-log", current=NOW,
                          stored_offsets={("t.events", 1): 40, ("t.events", 0): 12})
    message = str(refused.value)
    assert isinstance(refused.value, TandemError)
    for part in ("the aggregator", "/s/experiments.db", "old-log", "new-log", "t.events[0] up to offset 12",
                 "t.events[1] up to offset 40", "state is kept", "docs/operations.md"):
        assert part in message


def test_a_stored_offset_past_the_log_end_is_refused_with_both_offsets() -> None:
    check_offsets(consumer="the archiver", state="archive", stored={("t.events", 0): 5},
                  log_ends={("t.events", 0): 5})  # at the end: nothing new yet, not shorter
    with pytest.raises(StaleState, match=r"t\.events\[0\] stored offset 9, the log ends at 3"):
        check_offsets(consumer="the archiver", state="archive", stored={("t.events", 0): 9, ("t.events", 1): 1},
                      log_ends={("t.events", 0): 3, ("t.events", 1): 7})


def test_marker_file_round_trip_and_a_corrupt_marker_is_an_error(tmp_path: Path) -> None:
    marker = MarkerFile(tmp_path / "dir" / "incarnation.json")
    assert marker.read() is None
    marker.write(NOW)
    assert marker.read() == "new-log"
    marker.path.write_text("{not json")
    with pytest.raises(StaleState, match="unreadable incarnation marker"):
        marker.read()
