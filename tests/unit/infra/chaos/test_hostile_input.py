"""The hostile log: every bad record is refused by the schema of its topic, every valid one accepted."""

from __future__ import annotations

import json

import pytest

from experiments.errors import InvalidSpec
from experiments.lifecycle import apply_spec
from experiments.spec import DEMO_SPEC_PATH, load_spec, spec_from_json, spec_to_json
from infra.chaos.hostile_input import HOSTILE_KEY, hostile_log
from streams.events import Decision, Exposure, ListeningEvent, decode

SCHEMAS = {"events": ListeningEvent, "exposures": Exposure, "decisions": Decision}
SPEC = apply_spec(None, load_spec(DEMO_SPEC_PATH), who="chaos", at=1_767_225_600_000)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bad_records_are_bad_and_valid_ones_valid(seed: int) -> None:
    records, kinds = hostile_log(SPEC, bad=600, seed=seed, quick=True)
    assert sum(kinds.values()) == 600
    refused = accepted = 0
    for role, key, value in records:
        if role == "experiments":
            assert value != spec_to_json(SPEC)  # the good spec is published by the scenario, first
            with pytest.raises((InvalidSpec, ValueError)):
                spec_from_json(value)
            refused += 1
        elif key.startswith(HOSTILE_KEY) and b"no-such-experiment-" not in value:
            with pytest.raises(ValueError):
                decode(value, SCHEMAS[role])
            refused += 1
        else:
            decode(value, SCHEMAS[role])  # raises if a valid record is not
            accepted += 1
    assert refused == 600 - kinds["exposures/unknown_experiment"]
    assert accepted > 3000


def test_every_kind_of_bad_record_is_made() -> None:
    _, kinds = hostile_log(SPEC, bad=3000, seed=5, quick=True)
    made = {kind.split("/")[1] for kind in kinds}
    assert made == {"malformed", "not_utf8", "not_object", "wrong_type", "missing_field", "unknown_field",
                    "absurd_ts", "nan", "oversized", "unknown_experiment", "invalid_spec"}
    assert {kind.split("/")[0] for kind in kinds} == {"events", "exposures", "decisions", "experiments"}


def test_the_valid_records_stay_in_event_time_order() -> None:
    records, _ = hostile_log(SPEC, bad=300, seed=7, quick=True)
    times = [json.loads(value)["ts"] for role, key, value in records
             if role != "experiments" and not key.startswith(HOSTILE_KEY)]
    assert times == sorted(times)
