"""The /recommend body: what is accepted, and a precise reason for everything that is not."""

from __future__ import annotations

import pytest

from streams.serving import InvalidRequest, ServingConfig, parse_request
from tests.helpers import T0_MS


def test_a_full_request_is_parsed() -> None:
    request = parse_request(b'{"user_id": "u1", "candidates": ["jazz", "rock"], "ts": %d}' % T0_MS)
    assert (request.user_id, request.candidates, request.ts) == ("u1", ("jazz", "rock"), T0_MS)


def test_only_user_id_is_required() -> None:
    request = parse_request(b'{"user_id": "u1"}')
    assert request.candidates is None and request.ts is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe", "malformed JSON"),
        (b'["u1"]', "expected a JSON object, got list"),
        (b"{}", "user_id: Field required"),
        (b'{"user_id": 7}', "user_id: Input should be a valid string"),
        (b'{"user_id": ""}', "user_id: String should have at least 1 character"),
        (b'{"user_id": "u1", "candidates": []}', "candidates: "),
        (b'{"user_id": "u1", "candidates": "jazz"}', "candidates: "),
        (b'{"user_id": "u1", "candidates": ["jazz", 3]}', "candidates.1: Input should be a valid string"),
        (b'{"user_id": "u1", "candidates": ["jazz", "jazz"]}', "candidates: candidates must be distinct"),
        (b'{"user_id": "u1", "candidates": [""]}', "candidates.0: String should have at least 1 character"),
        (b'{"user_id": "u1", "ts": "1767225600000"}', "ts: Input should be a valid integer"),
        (b'{"user_id": "u1", "ts": 1767225600.5}', "ts: Input should be a valid integer"),
        (b'{"user_id": "u1", "ts": true}', "ts: Input should be a valid integer"),
        (b'{"user_id": "u1", "ts": 1767225600}', "ts: Input should be greater than or equal to"),
        (b'{"user_id": "u1", "colour": "red"}', "colour: unknown field"),
    ],
)
def test_invalid_bodies_name_the_problem(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=None) as caught:
        parse_request(body)
    assert reason in str(caught.value)
    assert caught.value.status == 400


def test_oversized_candidate_lists_are_refused() -> None:
    too_many = ", ".join(f'"a{i}"' for i in range(101)).encode()
    with pytest.raises(InvalidRequest, match="candidates: "):
        parse_request(b'{"user_id": "u1", "candidates": [%s]}' % too_many)
    with pytest.raises(InvalidRequest, match="at most 3 candidates, got 4"):
        parse_request(b'{"user_id": "u1", "candidates": ["a", "b", "c", "d"]}', max_candidates=3)


def test_the_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="arms"):
        ServingConfig(arms=("a", "a"))
    with pytest.raises(ValueError, match="feature_timeout_s"):
        ServingConfig(feature_timeout_s=0)
