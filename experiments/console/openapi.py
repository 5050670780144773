"""The console's OpenAPI 3.0 document, served at ``GET /openapi.json``."""

from __future__ import annotations

from typing import Any

from experiments.console.bodies import ApplyBody, DecideBody, StopBody

ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}, "description": "experiment id"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json({"$ref": "#/components/schemas/Error"})}


def _body(model: type) -> dict[str, Any]:
    return {"required": False, "content": _json({"$ref": f"#/components/schemas/{model.__name__}"})}


def _ok(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"type": "object"}}}}


#: Any operation, past ``tandem console --max-in-flight`` requests at once.
BUSY = {"429": _error("busy: too many requests at once, nothing done; retry after `Retry-After` seconds")}

WRITE_ERRORS = {
    "400": _error("the body is not JSON"),
    "401": _error("no or a wrong bearer token: nothing changed"),
    "409": _error("the lifecycle refuses the change (the reason says why): nothing changed"),
    "422": _error("the body or the spec is invalid; `fields` names each wrong field"),
    **BUSY,
}


def document() -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"], "properties": {
            "error": {"type": "string"},
            "fields": {"type": "array", "items": {"type": "object", "properties": {
                "field": {"type": "string"}, "message": {"type": "string"}}}},
        }},
    }
    for model in (ApplyBody, StopBody, DecideBody):
        schemas[model.__name__] = model.model_json_schema()
    return {
        "openapi": "3.0.3",
        "info": {"title": "tandem experiment console", "version": "1",
                 "description": "Experiments' lifecycle, statistics, health and decisions. Writes need "
                                "`Authorization: Bearer <TANDEM_CONSOLE_TOKEN>`."},
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": {
            "/api/experiments": {
                "get": {"summary": "every experiment: status, SRM and health at a glance",
                        "responses": {"200": _ok("the experiments"), **BUSY}},
                "post": {"summary": "apply a spec", "security": [{"bearer": []}], "requestBody": _body(ApplyBody),
                         "responses": {"200": _ok("the new version"), **WRITE_ERRORS}},
            },
            "/api/experiments/{id}": {
                "get": {"summary": "spec, status history, statistics, health, lift over time, decision",
                        "parameters": [ID],
                        "responses": {"200": _ok("the experiment"), "404": _error("no such experiment"),
                                      **BUSY}},
            },
            "/api/experiments/{id}/stop": {
                "post": {"summary": "stop a running experiment", "security": [{"bearer": []}], "parameters": [ID],
                         "requestBody": _body(StopBody),
                         "responses": {"200": _ok("the stopped version"), "404": _error("no such experiment"),
                                       **WRITE_ERRORS}},
            },
            "/api/experiments/{id}/decide": {
                "post": {"summary": "decide a stopped experiment (a running one with force)",
                         "security": [{"bearer": []}], "parameters": [ID], "requestBody": _body(DecideBody),
                         "responses": {"200": _ok("the decision record"), "404": _error("no such experiment"),
                                       **WRITE_ERRORS}},
            },
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": _ok("OpenAPI 3.0"), **BUSY}}},
        },
    }
