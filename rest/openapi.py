"""The route table and the OpenAPI document generated from it and the pydantic models."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from rest.rate_limits import is_rate_limited
from rest.schemas import ErrorBody

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_ERROR_TEXT = {
    400: "Invalid input",
    401: "Missing or invalid token",
    403: "Not allowed, or quota reached",
    404: "Unknown, or private to someone else",
    408: "The body did not arrive in time (or, for uploads, too slowly)",
    409: "Conflict",
    410: "Share link expired or revoked",
    413: "Body too large",
    415: "Body is not JSON, or a file is not of an accepted type",
    422: "A file's content is unreadable or refused",
    429: "Too many requests (see Retry-After)",
    503: "A dependency is unavailable",
}


@dataclass(frozen=True)
class Route:
    """One endpoint: how aiohttp dispatches it and how OpenAPI describes it."""

    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    auth: str = "required"  # "required" | "optional" | "none"
    body: type[BaseModel] | None = None
    form: type[BaseModel] | None = None  # a multipart/form-data body (file uploads)
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    errors: tuple[int, ...] = field(default=())
    html: bool = False  # a page for people: success and errors are text/html
    binary_body: bool = False  # the request body is application/octet-stream
    binary_response: bool = False  # success is application/octet-stream, with an ETag (304 on a match)


def build_openapi(routes: list[Route], *, title: str, version: str, server_url: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorBody}
    for route in routes:
        models.update(m for m in (route.body, route.form, route.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    inputs = {r.body for r in routes} | {r.form for r in routes}
    refs, schema = models_json_schema(
        [(m, "validation") for m in ordered if m in inputs]
        + [(m, "serialization") for m in ordered if m not in inputs],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return refs[(model, mode)]  # type: ignore[index]

    paths: dict[str, dict[str, Any]] = {}
    operation_ids: set[str] = set()
    for route in routes:
        if route.method == "HEAD":  # documented by its GET twin
            continue
        operation: dict[str, Any] = {
            "summary": route.summary,
            "tags": [route.tag],
            "operationId": _operation_id(route),
            "responses": {},
        }
        if route.auth != "none":
            operation["security"] = [{"bearer": []}] + ([{}] if route.auth == "optional" else [])
        parameters = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"} if name == "id" else {"type": "string"},
            }
            for name in _path_params(route.path)
        ]
        if route.query is not None:
            query_schema = route.query.model_json_schema()
            for name, prop in query_schema.get("properties", {}).items():
                parameters.append({"name": name, "in": "query", "required": False, "schema": prop})
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(route.body, "validation")}},
            }
        if route.form is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"multipart/form-data": {"schema": ref(route.form, "validation")}},
            }
        if route.binary_body:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        ok: dict[str, Any] = {"description": "Success"}
        html = {"text/html": {"schema": {"type": "string"}}}
        if route.response is not None:
            ok["content"] = {"application/json": {"schema": ref(route.response, "serialization")}}
        elif route.html:
            ok["content"] = html
        elif route.binary_response:
            ok["content"] = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
        operation["responses"][str(route.status)] = ok
        if route.binary_response:
            operation["responses"]["304"] = {"description": "Not modified: the If-None-Match ETag is current"}
        codes = set(route.errors) | {400}  # a URL with NUL, on any route (rest/url_text.py)
        if route.body is not None or route.binary_body:
            codes |= {400, 408, 413, 415}
        if route.form is not None:
            codes.add(408)
        if route.auth == "required":
            codes.add(401)
        if is_rate_limited(route.method, route.path):
            codes.add(429)
        for code in sorted(codes):
            # The URL check and the rate limiter answer JSON everywhere, pages included.
            as_page = route.html and code not in (400, 429)
            operation["responses"][str(code)] = {
                "description": _ERROR_TEXT.get(code, "Error"),
                "content": html
                if as_page
                else {"application/json": {"schema": ref(ErrorBody, "serialization")}},
            }
        if operation["operationId"] in operation_ids:
            raise ValueError(f"two routes share the OpenAPI operation id {operation['operationId']!r}")
        operation_ids.add(operation["operationId"])
        paths.setdefault(_openapi_path(route.path), {})[route.method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Our access token (POST /api/auth/anonymous) or a Firebase ID token",
                }
            },
        },
    }


def _operation_id(route: Route) -> str:
    """``<method>_<handler>_<tag>``; a route of a loop or a song whose tag is not the kind's own
    (sharing, collaborators, comments) also names the kind: ``post_create_loop_sharing``, so
    the loop and song twins of one handler never share an id."""
    parts = route.path.split("/")
    resource = parts[2] if len(parts) > 3 and parts[1] == "api" else None
    kind = f"_{resource[:-1]}" if resource in ("loops", "songs") and route.tag != resource else ""
    return f"{route.method.lower()}_{route.handler.__name__}{kind}_{route.tag}"


# A path segment's variables: a whole segment ``{name}`` or ``{name:regex}`` (the regex may hold
# braces), or plain ``{name}`` within a segment ("{token}.png").
_INNER_VARIABLE = re.compile(r"\{(\w+)\}")


def _segment_params(part: str) -> list[str]:
    if part.startswith("{") and part.endswith("}"):
        return [part[1:-1].split(":")[0]]
    return _INNER_VARIABLE.findall(part)


def _path_params(path: str) -> list[str]:
    return [name for part in path.split("/") for name in _segment_params(part)]


def _openapi_path(path: str) -> str:
    return "/".join(
        "{" + part[1:-1].split(":")[0] + "}" if part.startswith("{") and part.endswith("}") else part
        for part in path.split("/")
    )
