"""The binary document API: a loop's or song's Yjs state over HTTP, for servers and scripts
in any language with a Yjs implementation (docs/y-websocket.md#binary-document-api).

``GET /api/{loops|songs}/{id}/yjs`` answers the document as one Yjs update
(``application/octet-stream``), or with ``?stateVector=<base64>`` only what that state lacks;
its ETag names the document's state vector, so ``If-None-Match`` answers 304 without encoding
anything. ``POST`` the same path with an update as the body applies it as the caller, through
the same checks as a live edit (``realtime.document_bytes``). A share link's token is taken
as ``?shareToken=``, as other reads take it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from aiohttp import hdrs, web
from pydantic import Field

from realtime import document_bytes
from realtime.document_bytes import Caller
from rest.context import context, optional_caller, path_uuid, read_body, read_query
from rest.errors import BadRequest, UnsupportedMediaType
from rest.library import DocumentKind
from rest.schemas import OutputModel, QueryModel

OCTET_STREAM = "application/octet-stream"
# What a state vector may take as base64 in a URL: a real one is a few bytes per client that
# ever edited (2,048 characters: over 150 clients), and the request line stays well within
# what the HTTP server reads (8 KiB) even with every character percent-encoded.
MAX_STATE_VECTOR_CHARS = 2048


class YjsQuery(QueryModel):
    state_vector: str | None = Field(
        default=None,
        max_length=MAX_STATE_VECTOR_CHARS,
        pattern=r"^[A-Za-z0-9+/_=-]*$",
        description="base64 (standard or URL-safe) Yjs state vector: answer only what it lacks",
    )
    share_token: str | None = Field(default=None, min_length=1, max_length=128)


class YjsWriteQuery(QueryModel):
    share_token: str | None = Field(default=None, min_length=1, max_length=128)


class YjsApplied(OutputModel):
    state_vector: str = Field(description="the document's state vector after the update, base64")


def state_etag(state_vector: bytes) -> str:
    """The ETag of a document version: a hash of its state vector (the same on every instance)."""
    return "sv-" + hashlib.blake2b(state_vector, digest_size=16).hexdigest()


def decode_base64(text: str, what: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what} is not base64", details=[{"field": what}]) from None


class YjsDocumentHandlers:
    """GET and POST of one kind's Yjs state."""

    def __init__(self, kind: DocumentKind) -> None:
        self.kind = kind

    async def _caller(self, request: web.Request, share_token: str | None) -> Caller:
        caller = await optional_caller(request)
        return Caller(caller.user_id if caller else None, share_token)

    async def get_yjs(self, request: web.Request) -> web.StreamResponse:
        service = context(request).documents
        doc_id = path_uuid(request)
        query = read_query(request, YjsQuery)
        base = decode_base64(query.state_vector, "stateVector") if query.state_vector is not None else None
        caller = await self._caller(request, query.share_token)
        room = await document_bytes.readable_room(service, self.kind.doc_kind, doc_id, caller)
        etag = state_etag(room.state_vector())
        headers = {hdrs.CACHE_CONTROL: "private, no-cache", hdrs.VARY: "Authorization"}
        if request.if_none_match is not None and any(c.value in ("*", etag) for c in request.if_none_match):
            response = web.Response(status=304, headers=headers)
        else:
            update = document_bytes.read_update(service, room, base)
            response = web.Response(body=update, content_type=OCTET_STREAM, headers=headers)
        response.etag = etag
        return response

    async def post_yjs(self, request: web.Request) -> web.Response:
        service = context(request).documents
        doc_id = path_uuid(request)
        query = read_query(request, YjsWriteQuery)
        if request.content_type != OCTET_STREAM:
            raise UnsupportedMediaType(f"send the Yjs update as {OCTET_STREAM}")
        update = await read_body(request)
        if not update:
            raise BadRequest("the body is empty; send one Yjs update")
        caller = await self._caller(request, query.share_token)
        state_vector = await document_bytes.apply_update(service, self.kind.doc_kind, doc_id, caller, update)
        response = web.json_response(
            YjsApplied(state_vector=base64.b64encode(state_vector).decode()).model_dump(by_alias=True)
        )
        response.etag = state_etag(state_vector)
        return response
