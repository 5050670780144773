"""Serving's OpenAPI document, written from the request model serving validates with."""

from __future__ import annotations

import schemathesis

from infra.chaos.http_fuzz import serving_document
from streams.serving.request import RecommendRequest


def test_schemathesis_reads_every_route_of_serving() -> None:
    document = serving_document()
    schema = schemathesis.openapi.from_dict(document)
    assert sorted((path, method) for path, methods in document["paths"].items() for method in methods) == [
        ("/health", "get"), ("/metrics", "get"), ("/recommend", "post")]
    assert schema["/recommend"]["POST"] is not None
    body = document["paths"]["/recommend"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == RecommendRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    assert body["required"] == ["user_id"] and body["additionalProperties"] is False
