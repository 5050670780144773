"""The wire schemas: round trips, and precise rejection of everything malformed."""

from __future__ import annotations

import json

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from streams.errors import InvalidRecord, RecordTooLarge
from streams.events import (
    MAX_RECORD_BYTES,
    MAX_TS_MS,
    MIN_TS_MS,
    Decision,
    Exposure,
    ListeningEvent,
    ModelSnapshot,
    dead_letter,
    decode,
    decode_dead_letter,
    decode_event,
    encode,
    encode_dead_letter,
)
from tests.helpers import T0_MS

ids = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
timestamps = st.integers(min_value=MIN_TS_MS, max_value=MAX_TS_MS - 1)

events = st.builds(
    ListeningEvent,
    event_id=ids,
    user_id=ids,
    ts=timestamps,
    type=st.sampled_from(["play", "skip", "like"]),
    item_id=ids,
    genre=st.none() | ids,
    ms_played=st.integers(min_value=0, max_value=86_400_000),
)


def valid_event_payload() -> dict[str, object]:
    return {
        "v": 1,
        "event_id": "e1",
        "user_id": "u1",
        "ts": T0_MS,
        "type": "play",
        "item_id": "jazz-1",
        "genre": "jazz",
        "ms_played": 30_000,
    }


@given(events)
def test_events_round_trip_through_the_codec(event: ListeningEvent) -> None:
    assert decode_event(encode(event)) == event


@given(st.binary(max_size=300))
@settings(max_examples=300)
def test_random_bytes_are_rejected_with_invalid_record_only(raw: bytes) -> None:
    try:
        decode_event(raw)
    except InvalidRecord as exc:
        assert str(exc).startswith("ListeningEvent: ")


@pytest.mark.parametrize("field", ["event_id", "user_id", "ts", "type"])
def test_a_missing_field_is_named(field: str) -> None:
    payload = valid_event_payload()
    del payload[field]
    with pytest.raises(InvalidRecord, match=rf"{field}: Field required"):
        decode_event(json.dumps(payload))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ts", "1767225600000", "ts: Input should be a valid integer"),
        ("ts", 1.5e12, "ts: Input should be a valid integer"),
        ("ts", 17_672_256_000_000_000, "ts: Input should be less than"),
        ("ts", 0, "ts: Input should be greater than or equal to"),
        ("ms_played", -1, "ms_played: Input should be greater than or equal to 0"),
        ("ms_played", True, "ms_played: Input should be a valid integer"),
        ("type", "zap", "type: Input should be 'play'"),
        ("user_id", 42, "user_id: Input should be a valid string"),
        ("user_id", "", "user_id: String should have at least 1 character"),
        ("surprise", 1, "surprise: Extra inputs are not permitted"),
        ("v", 2, "v: Input should be 1"),
    ],
)
def test_a_mistyped_field_is_named(field: str, value: object, message: str) -> None:
    payload = valid_event_payload()
    payload[field] = value
    with pytest.raises(InvalidRecord, match=message):
        decode_event(json.dumps(payload))


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(token: str) -> None:
    raw = json.dumps(valid_event_payload()).replace("30000", token)
    with pytest.raises(InvalidRecord, match="non-finite"):
        decode_event(raw)


def test_an_item_event_must_name_its_item() -> None:
    payload = valid_event_payload()
    del payload["item_id"]
    with pytest.raises(InvalidRecord, match="item_id: required for a play event"):
        decode_event(json.dumps(payload))


def test_session_events_need_no_item() -> None:
    payload = {"event_id": "e", "user_id": "u", "ts": T0_MS, "type": "session_start"}
    assert decode_event(json.dumps(payload)).item_id is None


def test_oversized_records_are_rejected_before_parsing() -> None:
    payload = valid_event_payload()
    payload["genre"] = "x" * MAX_RECORD_BYTES
    with pytest.raises(RecordTooLarge, match="over the 65536-byte limit"):
        decode_event(json.dumps(payload))


@pytest.mark.parametrize("as_given", [bytearray, memoryview, bytes.decode], ids=["bytearray", "memoryview", "str"])
def test_any_buffer_decodes_as_its_bytes_do(as_given) -> None:
    good = json.dumps(valid_event_payload()).encode()
    assert decode_event(as_given(good)) == decode_event(good)
    bad = json.dumps({**valid_event_payload(), "ts": "soon"}).encode()
    with pytest.raises(InvalidRecord) as from_bytes:
        decode_event(bad)
    with pytest.raises(InvalidRecord) as from_buffer:
        decode_event(as_given(bad))
    assert str(from_buffer.value) == str(from_bytes.value)


def test_json_that_is_not_an_object_is_rejected() -> None:
    with pytest.raises(InvalidRecord, match="expected a JSON object, got list"):
        decode_event(b"[1, 2]")


def test_decisions_check_the_chosen_arm_and_propensity() -> None:
    base = {
        "decision_id": "d1",
        "user_id": "u1",
        "ts": T0_MS,
        "policy": "linucb",
        "policy_version": 3,
        "arm": "jazz",
        "propensity": 0.25,
        "arms": ["jazz", "rock"],
        "context": {"plays_1h": 2.0},
        "assignments": {"exp": "treatment"},
    }
    decision = decode(json.dumps(base), Decision)
    assert decode(encode(decision), Decision) == decision
    with pytest.raises(InvalidRecord, match="arm: 'pop' is not one of the candidate arms"):
        decode(json.dumps({**base, "arm": "pop"}), Decision)
    with pytest.raises(InvalidRecord, match="propensity: Input should be greater than 0"):
        decode(json.dumps({**base, "propensity": 0.0}), Decision)


def test_exposures_and_snapshots_round_trip() -> None:
    exposure = Exposure(exposure_id="x1", experiment="exp", variant="control", user_id="u1", ts=T0_MS)
    assert decode(encode(exposure), Exposure) == exposure
    snapshot = ModelSnapshot(
        snapshot_id="s1", policy="linucb", version=7, ts=T0_MS, updates=100, state={"arms": {"jazz": [1.0, 2.0]}}
    )
    assert decode(encode(snapshot), ModelSnapshot) == snapshot


def test_dead_letters_keep_the_raw_bytes_and_the_reason() -> None:
    raw = b"\xff not json" * 10_000  # oversized and not UTF-8
    with pytest.raises(InvalidRecord) as caught:
        decode_event(raw)
    letter = dead_letter(
        raw_value=raw, raw_key=b"u1", source_topic="tandem.events", partition=2, offset=41, error=caught.value,
        stage="features",
    )
    assert letter.raw_value() == raw
    assert letter.value_bytes == len(raw)
    assert letter.error_type == "RecordTooLarge"
    assert "over the 65536-byte limit" in letter.error
    encoded = encode_dead_letter(letter)
    assert len(encoded) > MAX_RECORD_BYTES
    assert decode_dead_letter(encoded) == letter


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)
field_values = {
    "v": st.sampled_from([1, 2, 1.0, "1", True]),
    "event_id": st.sampled_from(["e1", "", 7]) | json_values,
    "user_id": st.sampled_from(["u1", "user-9"]) | json_values,
    "ts": st.sampled_from([T0_MS, float(T0_MS), str(T0_MS), 0, MAX_TS_MS, True]) | json_values,
    "type": st.sampled_from(["play", "skip", "session_start", "Play", 1]),
    "item_id": st.sampled_from(["i1", None, ""]) | json_values,
    "genre": st.sampled_from(["jazz", None]) | json_values,
    "ms_played": st.sampled_from([0, 30_000, -1, 1.0, 2.5, "10", False]) | json_values,
}
field_values["extra"] = json_values
#: A valid event with up to two fields replaced by odd values and maybe one dropped.
payloads = st.builds(
    lambda overrides, dropped: {k: v for k, v in {**valid_event_payload(), **overrides}.items() if k != dropped},
    st.lists(st.sampled_from(sorted(field_values)), max_size=2, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: field_values[key] for key in keys})),
    st.none() | st.none() | st.sampled_from(sorted(field_values)),
)


def _slow_path_outcome(raw: bytes) -> object:
    """What ``decode`` answers without its pydantic JSON fast path (json.loads, then validation)."""
    from pydantic import ValidationError

    try:
        payload = json.loads(raw.decode("utf-8"))
        return ListeningEvent.model_validate(payload) if isinstance(payload, dict) else "rejected"
    except (ValueError, ValidationError):
        return "rejected"


@given(payloads)
@settings(max_examples=400)
def test_the_fast_path_accepts_exactly_what_the_precise_path_accepts(payload: dict[str, object]) -> None:
    raw = json.dumps(payload).encode()
    try:
        fast: object = decode_event(raw)
    except InvalidRecord:
        fast = "rejected"
    assert fast == _slow_path_outcome(raw)
    event(f"accepted: {fast != 'rejected'}")  # both kinds must be well represented (--hypothesis-show-statistics)
