"""Every JSON response of the API is made here: compact UTF-8 JSON, one content type."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel

CONTENT_TYPE = "application/json"
CHARSET = "utf-8"


def encode_json(payload: Any) -> bytes:
    """A pydantic model (by alias) or plain JSON data, as compact UTF-8 bytes."""
    if isinstance(payload, BaseModel):
        return payload.model_dump_json(by_alias=True).encode()
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(
    payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """``payload`` is a model, plain JSON data, or bytes already encoded by :func:`encode_json`."""
    body = payload if isinstance(payload, bytes) else encode_json(payload)
    return web.Response(body=body, status=status, headers=headers, content_type=CONTENT_TYPE, charset=CHARSET)
