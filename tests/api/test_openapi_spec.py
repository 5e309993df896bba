"""The served ``/api/openapi.json`` is a valid OpenAPI document that code generators accept.

``openapi-spec-validator`` checks it against the OpenAPI 3.1 specification (which also
requires unique operation ids); the checks after it are what the validator does not see but
a typed client needs: no ``default: null`` on a field that does not accept null, and every
field of an answer marked required (answers always carry every field).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate


def _accepts_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(_accepts_null(o) for o in prop.get("anyOf", ()))


async def _spec(client: TestClient) -> dict[str, Any]:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    spec: dict[str, Any] = await resp.json()
    return spec


async def test_the_served_spec_passes_openapi_spec_validator(client: TestClient) -> None:
    spec = await _spec(client)
    validate(spec)  # raises on any violation of OpenAPI 3.1, duplicate operation ids included
    ids = Counter(op["operationId"] for ops in spec["paths"].values() for op in ops.values())
    assert [op for op, n in ids.items() if n > 1] == []
    # The loop and song twins of the shared handlers name their kind.
    assert spec["paths"]["/api/loops/{id}/share"]["post"]["operationId"] == "post_create_loop_sharing"
    assert spec["paths"]["/api/songs/{id}/share"]["post"]["operationId"] == "post_create_song_sharing"
    assert spec["paths"]["/api/songs/{id}/comments"]["get"]["operationId"] == "get_list_song_comments"


async def test_no_null_default_on_a_field_that_refuses_null(client: TestClient) -> None:
    schemas = (await _spec(client))["components"]["schemas"]
    wrong = [
        f"{name}.{field}"
        for name, schema in schemas.items()
        for field, prop in schema.get("properties", {}).items()
        if "default" in prop and prop["default"] is None and not _accepts_null(prop)
    ]
    assert wrong == []
    # Partial updates: absent means unchanged; null is accepted only where it clears a value.
    loop_update = schemas["LoopUpdate"]["properties"]
    assert "default" not in loop_update["name"] and loop_update["name"]["type"] == "string"
    assert _accepts_null(loop_update["bpm"]) and loop_update["bpm"]["default"] is None
    assert "default" not in schemas["SongUpdate"]["properties"]["timeline"]
    assert "default" not in schemas["ProfileUpdate"]["properties"]["username"]
    assert _accepts_null(schemas["ProfileUpdate"]["properties"]["bio"])


async def test_every_field_of_an_answer_is_required(client: TestClient) -> None:
    spec = await _spec(client)
    inputs = _input_models(spec)
    loose = {
        name: sorted(set(schema.get("properties", {})) - set(schema.get("required", [])))
        for name, schema in spec["components"]["schemas"].items()
        if name not in inputs
    }
    assert {name: fields for name, fields in loose.items() if fields} == {}


def _input_models(spec: dict[str, Any]) -> set[str]:
    """Schemas reachable from a request body (they may have optional fields)."""
    schemas = spec["components"]["schemas"]
    todo = [
        body["schema"]["$ref"]
        for ops in spec["paths"].values()
        for op in ops.values()
        for body in op.get("requestBody", {}).get("content", {}).values()
        if "$ref" in body["schema"]  # not a binary body (the binary document API)
    ]
    seen: set[str] = set()
    while todo:
        name = todo.pop().rsplit("/", 1)[1]
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_refs(schemas[name]))
    return seen


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []
