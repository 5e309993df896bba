"""What REST handlers need, stored on the app under one typed key, and who is calling."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from identity.authenticator import Authenticator, Caller
from identity.errors import InvalidToken
from music.ids import parse_canonical_uuid
from realtime.service import DocumentService
from rest.errors import BadRequest, RequestTimeout, UnsupportedMediaType, validation_error
from rest.responses import json_response
from settings import Settings
from storage.database import Database
from storage.errors import Unauthorized
from storage.views import ViewCounter

M = TypeVar("M", bound=BaseModel)
MAX_ECHOED_ID = 64  # how much of a bad path id an error message repeats


@dataclass(frozen=True)
class RestContext:
    settings: Settings
    db: Database
    auth: Authenticator
    documents: DocumentService
    views: ViewCounter


REST_CONTEXT = web.AppKey("rest_context", RestContext)
# Set once per request by optional_caller(); None means "no token sent".
CALLER = web.RequestKey[Caller | None]("caller")


def context(request: web.Request) -> RestContext:
    return request.app[REST_CONTEXT]


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("Authorization header must be 'Bearer <token>'")
    return token.strip()


async def optional_caller(request: web.Request) -> Caller | None:
    """The authenticated caller, None without a token; a bad token is always a 401."""
    if CALLER in request:
        return request[CALLER]
    token = bearer_token(request)
    caller: Caller | None = None
    if token is not None:
        caller = await context(request).auth.authenticate(token)
    request[CALLER] = caller
    return caller


async def require_caller(request: web.Request) -> Caller:
    caller = await optional_caller(request)
    if caller is None:
        raise Unauthorized("sign in first: send 'Authorization: Bearer <token>'")
    return caller


async def read_json(request: web.Request, model: type[M]) -> M:
    """Validate a JSON body against ``model`` (the size limit is the app's client_max_size)."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    body = await read_body(request)
    if not body:
        raise BadRequest("request body is empty; send a JSON object")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def read_body(request: web.Request) -> bytes:
    """The whole request body, within ``HTTP_BODY_TIMEOUT_SECONDS`` (a client that trickles
    its body holds a connection and a buffer for no longer than that)."""
    try:
        async with asyncio.timeout(context(request).settings.http_body_timeout):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout("the request body did not arrive in time") from None


def read_query(request: web.Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise validation_error(exc, what="query string") from None


def path_uuid(request: web.Request, name: str = "id") -> uuid.UUID:
    raw = request.match_info[name]
    parsed = parse_canonical_uuid(raw)
    if parsed is None:  # one spelling per id, as for socket namespaces
        shown = raw if len(raw) <= MAX_ECHOED_ID else raw[:MAX_ECHOED_ID] + "..."
        message = f"{shown!r} is not a valid id (expected a lowercase UUID)"
        raise BadRequest(message, details=[{"field": name}])
    return parsed


def json_model(model: BaseModel, status: int = 200) -> web.Response:
    return json_response(model, status=status)
