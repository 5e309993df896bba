"""What any client can throw at the HTTP layer: every answer is the error JSON, never a 500."""

from __future__ import annotations

import io
import json

from aiohttp.test_utils import TestClient

from tests.helpers import LOOP, bearer, expect_error, sign_up


async def test_malformed_bodies(client: TestClient) -> None:
    owner = await sign_up(client)
    headers = {**bearer(owner["token"]), "Content-Type": "application/json"}
    cases = [b"{bad", b"", b"[]", b'"text"', b"null", b"\xff\xfe", b'{"name": "x", "length": 4,}']
    for body in cases:
        resp = await client.post("/api/loops", data=body, headers=headers)
        await expect_error(resp, 400, "validation_error")


async def test_wrong_content_type(client: TestClient) -> None:
    owner = await sign_up(client)
    resp = await client.post(
        "/api/loops", data="name=x", headers={**bearer(owner["token"]), "Content-Type": "text/plain"}
    )
    await expect_error(resp, 415, "unsupported_media_type")


async def test_oversized_body(client: TestClient) -> None:
    owner = await sign_up(client)
    huge = json.dumps({**LOOP, "name": "x" * (2 * 1024 * 1024)}).encode()
    resp = await client.post(
        "/api/loops",
        data=io.BytesIO(huge),
        headers={**bearer(owner["token"]), "Content-Type": "application/json"},
    )
    await expect_error(resp, 413, "payload_too_large")


async def test_unknown_route_and_method(client: TestClient) -> None:
    await expect_error(await client.get("/api/nothing-here"), 404, "not_found")
    resp = await client.put("/api/loops")
    body = await expect_error(resp, 405, "method_not_allowed")
    assert body["error"]
    assert "GET" in resp.headers["Allow"]


async def test_cors_preflight_and_headers(client: TestClient) -> None:
    origin = "http://composer.test"
    resp = await client.options(
        "/api/loops",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert "AUTHORIZATION" in resp.headers["Access-Control-Allow-Headers"].upper()
    resp = await client.post("/api/auth/anonymous", headers={"Origin": origin})
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    # Another origin gets no CORS grant.
    resp = await client.options(
        "/api/loops", headers={"Origin": "http://evil.test", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_health_and_readiness(client: TestClient) -> None:
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    resp = await client.get("/readyz")
    assert resp.status == 200 and (await resp.json())["status"] == "ok"


async def test_openapi_describes_every_route(client: TestClient) -> None:
    resp = await client.get("/api/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    served = set()
    for route in client.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if route.method in ("HEAD", "OPTIONS", "*") or path in ("/api/openapi.json", "/api/asyncapi.json"):
            continue
        assert path is not None  # every served route's resource has a path or a formatter
        if path.startswith("/socket.io"):  # the Socket.IO endpoint: docs/realtime.md
            continue
        if path.startswith("/ws/"):  # the y-websocket endpoints: docs/y-websocket.md, AsyncAPI
            continue
        served.add((route.method.lower(), path))
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    create_loop = doc["paths"]["/api/loops"]["post"]
    ref = create_loop["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert schema["additionalProperties"] is False
    assert {"name", "chordProgression", "iconSequence"} <= set(schema["properties"])
    assert "401" in create_loop["responses"] and "201" in create_loop["responses"]
