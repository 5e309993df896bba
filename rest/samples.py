"""Audio samples over HTTP: streamed upload, list, get, delete, and the local file server.

The upload is read part by part from the multipart stream into an anonymous temporary
file, in bounded chunks: the type is judged from the first bytes (415 before the rest is
read), the size limit is enforced as the bytes arrive (413 the moment it is crossed), the
body must arrive in time and at a minimum pace (408, ``rest.body_pace``), and memory does
not grow with the file. The rest (full validation, scan, storage, quota) is
:func:`storage.samples.save_upload`.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any, BinaryIO

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import ContentLengthError, HttpProcessingError, TransferEncodingError
from sqlalchemy.ext.asyncio import AsyncSession

from events import outbox
from rest.body_pace import BodyPace
from rest.context import context, json_model, optional_caller, path_uuid, read_query, require_caller
from rest.errors import BadRequest, UnsupportedMediaType
from rest.responses import json_response
from rest.schemas import LoopSample, SampleListQuery, SamplePublic, Success
from storage import audio
from storage import samples as stored
from storage.blobs import BlobStore
from storage.blobs.base import CHUNK_SIZE
from storage.blobs.local import LocalBlobStore
from storage.blobs.s3 import IMMUTABLE
from storage.errors import FileTooLarge, NotFound
from storage.models import Loop, Sample
from storage.scan import Scanner

# Where the app serves locally stored samples (keys are ``samples/<32 hex>.<ext>``).
LOCAL_FILE_PATH = r"/files/samples/{name:[0-9a-f]{32}\.(?:wav|mp3)}"
# Bytes of the optional ``name`` field we read before refusing it (names are cut to 100 chars).
MAX_NAME_FIELD_BYTES = 400


@dataclass(frozen=True)
class SampleContext:
    blobs: BlobStore
    scanner: Scanner | None
    max_bytes: int
    quota: int


SAMPLES = web.AppKey("samples", SampleContext)


class UploadInterrupted(BadRequest):
    code = "upload_interrupted"


async def sample_json(blobs: BlobStore, sample: Sample) -> dict[str, Any]:
    data = SamplePublic.model_validate(
        {
            "id": sample.id,
            "name": sample.name,
            "file_url": await blobs.url(sample.storage_key),
            "file_size": sample.file_size,
            "mime_type": sample.mime_type,
            "duration": sample.duration,
            "created_at": sample.created_at,
        }
    )
    return data.model_dump(mode="json", by_alias=True)


async def loop_samples_json(
    session: AsyncSession,
    blobs: BlobStore,
    content: dict[str, Any],
    *,
    loop: Loop,
    reader_id: uuid.UUID | None,
) -> list[Any]:
    """``samples`` of a loop response: what its steps reference, with URLs for its reader
    (only the samples the loop shares with that reader; see ``samples_referenced``)."""
    refs = await stored.samples_referenced(
        session, content, blobs, loop_owner_id=loop.user_id, forked_from=loop.forked_from, reader_id=reader_id
    )
    return [
        LoopSample(id=r.id, name=r.name, file_url=r.url, duration=r.duration, missing=r.missing).model_dump(
            mode="json", by_alias=True
        )
        for r in refs
    ]


async def loop_samples(request: web.Request, loop: Loop, content: dict[str, Any]) -> list[Any]:
    """``samples`` of a loop response for this request's reader (no query if it uses none)."""
    if not stored.referenced_sample_ids(content):
        return []
    caller = await optional_caller(request)
    async with context(request).db.session() as session:
        return await loop_samples_json(
            session,
            request.app[SAMPLES].blobs,
            content,
            loop=loop,
            reader_id=caller.user_id if caller is not None else None,
        )


async def _spool_file(part: BodyPartReader, spool: BinaryIO, max_bytes: int, pace: BodyPace) -> int:
    """Copy the file part into ``spool``; returns its size. Sniffs the type from the first bytes."""
    size = 0
    head = b""
    while chunk := await part.read_chunk(CHUNK_SIZE):
        pace.progress()
        size += len(chunk)
        if size > max_bytes:
            raise FileTooLarge(
                f"the file is larger than the limit of {max_bytes} bytes ({max_bytes / 1024 / 1024:g} MiB)",
                details=[{"field": "file", "maxBytes": max_bytes}],
            )
        if len(head) < audio.SNIFF_BYTES:
            head += chunk[: audio.SNIFF_BYTES]
            if len(head) >= audio.SNIFF_BYTES:
                audio.sniff(head)  # a wrong type is refused before the rest is uploaded
        await asyncio.to_thread(spool.write, chunk)
    if len(head) < audio.SNIFF_BYTES:
        audio.sniff(head)
    return size


async def _read_name(part: BodyPartReader, pace: BodyPace) -> str:
    raw = b""
    while chunk := await part.read_chunk(MAX_NAME_FIELD_BYTES + 1):
        pace.progress()
        raw += chunk
        if len(raw) > MAX_NAME_FIELD_BYTES:
            raise BadRequest(
                f"name is too long (at most {MAX_NAME_FIELD_BYTES} bytes)", details=[{"field": "name"}]
            )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("name must be UTF-8 text", details=[{"field": "name"}]) from None


async def upload(request: web.Request) -> web.Response:
    caller = await require_caller(request)
    samples = request.app[SAMPLES]
    if request.content_type != "multipart/form-data":
        raise UnsupportedMediaType("send the sample as multipart/form-data with a 'file' field")
    reader = await request.multipart()
    spool = await asyncio.to_thread(tempfile.TemporaryFile)  # anonymous: gone on close or crash
    try:
        size: int | None = None
        filename: str | None = None
        name: str | None = None
        settings = context(request).settings
        try:
            async with BodyPace(
                request,
                total=settings.upload_timeout,
                min_rate=settings.upload_min_bytes_per_second,
                window=settings.upload_rate_window,
            ) as pace:
                async for part in reader:
                    pace.progress()
                    if not isinstance(part, BodyPartReader):
                        raise BadRequest("nested multipart bodies are not accepted")
                    if part.name == "file" and size is None:
                        filename = part.filename
                        size = await _spool_file(part, spool, samples.max_bytes, pace)
                    elif part.name == "name" and name is None:
                        name = await _read_name(part, pace)
                    elif part.name in {"file", "name"}:
                        raise BadRequest(f"send one {part.name!r} field", details=[{"field": part.name}])
                    else:
                        raise BadRequest(f"unknown field {part.name!r}", details=[{"field": part.name}])
        except (ConnectionError, ContentLengthError, TransferEncodingError, asyncio.IncompleteReadError):
            raise UploadInterrupted("the upload was interrupted before the whole body arrived") from None
        except (HttpProcessingError, ValueError) as exc:
            raise BadRequest(f"malformed multipart body ({type(exc).__name__})") from None
        if size is None:
            raise BadRequest("the 'file' field is missing", details=[{"field": "file"}])
        ctx = context(request)
        sample = await stored.save_upload(
            ctx.db,
            samples.blobs,
            user_id=caller.user_id,
            spool=spool,
            size=size,
            name=stored.display_name(name, filename),
            quota=samples.quota,
            scanner=samples.scanner,
        )
        # storage.samples commits the row itself: the event follows in a transaction of its own.
        async with ctx.db.write_session() as session:
            await outbox.record(
                session,
                "sample.uploaded",
                {"sample": {"id": str(sample.id), "name": sample.name, "bytes": sample.file_size}},
                actor_id=caller.user_id,
            )
    finally:
        await asyncio.to_thread(spool.close)
    return json_response(await sample_json(samples.blobs, sample), status=201)


async def list_samples(request: web.Request) -> web.Response:
    caller = await require_caller(request)
    query = read_query(request, SampleListQuery)
    samples = request.app[SAMPLES]
    async with context(request).db.session() as session:
        rows, count, total_size = await stored.list_samples(
            session, caller.user_id, offset=(query.page - 1) * query.limit, limit=query.limit
        )
    return json_response(
        {
            "samples": [await sample_json(samples.blobs, row) for row in rows],
            "totalSize": total_size,
            "quota": samples.quota,
            "total": count,
            "page": query.page,
            "hasMore": query.page * query.limit < count,
        }
    )


async def get_sample(request: web.Request) -> web.Response:
    sample_id = path_uuid(request)
    caller = await require_caller(request)
    async with context(request).db.session() as session:
        sample = await stored.get_owned_sample(session, sample_id, caller.user_id)
    if sample is None:
        raise NotFound("sample not found")
    return json_response(await sample_json(request.app[SAMPLES].blobs, sample))


async def delete_sample(request: web.Request) -> web.Response:
    sample_id = path_uuid(request)
    caller = await require_caller(request)
    found = await stored.delete_sample(
        context(request).db, request.app[SAMPLES].blobs, sample_id=sample_id, user_id=caller.user_id
    )
    if not found:
        raise NotFound("sample not found")
    return json_model(Success())


async def serve_file(request: web.Request) -> web.StreamResponse:
    """A locally stored sample, with its type, Range (206), ETag and an immutable cache."""
    blobs = request.app[SAMPLES].blobs
    if not isinstance(blobs, LocalBlobStore):
        raise NotFound("no such file")
    key = f"samples/{request.match_info['name']}"
    try:
        info = await blobs.stat(key)
    except (LookupError, ValueError):
        raise NotFound("no such file") from None
    return web.FileResponse(
        blobs.path(key),
        headers={
            "Content-Type": info.content_type,
            "Cache-Control": IMMUTABLE,
            "X-Content-Type-Options": "nosniff",
            "Content-Disposition": "inline",
        },
    )
