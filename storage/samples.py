"""Audio samples: validated uploads, the per-user quota, and the samples a loop references.

The bytes live in a blob store (local disk or S3), the row in ``samples``. An upload is
spooled to a temporary file by the HTTP edge, then :func:`save_upload` validates it from
its bytes, scans it (optional), stores the object, and inserts the row in a transaction
that checks the quota under the owner's row lock. Whatever fails, the object is removed
again: a failed upload leaves no row, no object and uses no quota.

A loop uses a sample as ``soundId: "sample:<id>"``. Anyone who can read the loop can play
the samples of its owner that it references, and those its forks inherited from a loop the
reader can read (:func:`samples_referenced`); a reference to anyone else's sample reveals
nothing. Deleting a sample a loop still uses is allowed, and the loop then reports that
sample as missing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import audio
from storage.access import load_access_rules
from storage.blobs import BlobStore
from storage.blobs.base import CHUNK_SIZE, EXTENSION_BY_CONTENT_TYPE
from storage.database import Database
from storage.errors import QuotaExceeded, Unauthorized
from storage.models import Loop, Sample, User, utcnow
from storage.scan import Scanner

log = logging.getLogger(__name__)

# The seed's limits. Sizes are binary megabytes (MiB): 5 MB = 5 x 1024 x 1024 bytes.
MAX_SAMPLE_BYTES = 5 * 1024 * 1024
SAMPLE_QUOTA_BYTES = 100 * 1024 * 1024
MAX_SAMPLE_NAME = 100
SOUND_ID_PREFIX = "sample:"
DEFAULT_SAMPLE_NAME = "Untitled sample"
MAX_FORK_ANCESTORS = 8  # how far up a fork's history a sample reference is traced


@dataclass(frozen=True)
class SampleRef:
    """A sample a loop references, as that loop's readers see it."""

    id: str
    name: str | None
    url: str | None
    duration: float | None

    @property
    def missing(self) -> bool:
        return self.url is None


def new_key(mime_type: str) -> str:
    """A random object key (128 bits) with the extension of the detected type."""
    return f"samples/{secrets.token_hex(16)}{EXTENSION_BY_CONTENT_TYPE[mime_type]}"


_PATH_PARTS = re.compile(r"[\\/]")
_WHITESPACE = re.compile(r"\s+")


def display_name(raw: str | None, filename: str | None) -> str:
    """A name safe to show: no path, no control or format characters, bounded length.

    ``raw`` is the ``name`` field; without it, the upload's file name minus its extension.
    """
    candidate = raw if raw and raw.strip() else None
    if candidate is None and filename:
        base = _PATH_PARTS.split(filename)[-1]
        candidate = base.rsplit(".", 1)[0] if "." in base else base
    text = unicodedata.normalize("NFC", candidate or "")
    # Cc: control characters; Cf: format characters, including bidi overrides (U+202E).
    text = "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in text)
    text = _WHITESPACE.sub(" ", text).strip()[:MAX_SAMPLE_NAME].strip()
    return text or DEFAULT_SAMPLE_NAME


async def bytes_used(session: AsyncSession, user_id: uuid.UUID) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(Sample.file_size), 0)).where(Sample.user_id == user_id)
    )
    return int(total or 0)


def _quota_error(used: int, size: int, quota: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"sample storage quota reached: {used} of {quota} bytes used, this file needs {size}",
        details=[{"used": used, "quota": quota, "size": size}],
    )


async def check_room(db: Database, *, user_id: uuid.UUID, size: int, quota: int) -> None:
    """Early, advisory quota check (the binding one is in :func:`insert_sample`)."""
    async with db.session() as session:
        used = await bytes_used(session, user_id)
    if used + size > quota:
        raise _quota_error(used, size, quota)


async def insert_sample(
    session: AsyncSession, *, user_id: uuid.UUID, quota: int, values: Mapping[str, Any]
) -> Sample:
    """Insert the row unless it would take the owner past ``quota``.

    Atomic: the owner's row is locked first (``SELECT ... FOR UPDATE`` on Postgres; SQLite
    write sessions take the database write lock at BEGIN), so two parallel uploads cannot
    both see room for themselves.
    """
    owner = (
        await session.execute(select(User.id).where(User.id == user_id).with_for_update())
    ).scalar_one_or_none()
    if owner is None:
        raise Unauthorized("this account no longer exists")
    used = await bytes_used(session, user_id)
    if used + int(values["file_size"]) > quota:
        raise _quota_error(used, int(values["file_size"]), quota)
    sample = Sample(user_id=user_id, created_at=utcnow(), **values)
    session.add(sample)
    await session.flush()
    return sample


def _sha256(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    fh.seek(0)
    while chunk := fh.read(CHUNK_SIZE):
        digest.update(chunk)
    return digest.hexdigest()


async def save_upload(
    db: Database,
    blobs: BlobStore,
    *,
    user_id: uuid.UUID,
    spool: BinaryIO,
    size: int,
    name: str,
    quota: int,
    scanner: Scanner | None = None,
) -> Sample:
    """Validate, scan, store and record a spooled upload of ``size`` bytes.

    Raises a domain error (415 / 422 / 403 quota / 503 scanner) and leaves nothing behind.
    """
    info = await asyncio.to_thread(audio.inspect, spool, size)
    if scanner is not None:
        spool.seek(0)
        await scanner.scan(spool)
    await check_room(db, user_id=user_id, size=size, quota=quota)
    checksum = await asyncio.to_thread(_sha256, spool)
    key = new_key(info.mime_type)
    spool.seek(0)
    try:
        await blobs.put(key, spool, size=size, content_type=info.mime_type)
        async with db.write_session() as session:
            sample = await insert_sample(
                session,
                user_id=user_id,
                quota=quota,
                values={
                    "name": name,
                    # A locator, not a URL to hand out: readers get blobs.url() at read time.
                    "file_url": f"{blobs.name}:{key}",
                    "storage_key": key,
                    "file_size": size,
                    "mime_type": info.mime_type,
                    "duration": info.duration,
                    "content_sha256": checksum,
                },
            )
    except BaseException:
        # Also on cancellation (client gone, shutdown): the object must not outlive the upload.
        await asyncio.shield(_delete_quietly(blobs, [key]))
        raise
    return sample


async def delete_sample_objects(blobs: BlobStore, keys: Iterable[str]) -> None:
    """Delete stored objects whose rows are already gone (the anonymous purge): logged, never raised."""
    await _delete_quietly(blobs, keys)


async def _delete_quietly(blobs: BlobStore, keys: Iterable[str]) -> None:
    for key in keys:
        try:
            await blobs.delete(key)
        except Exception:
            log.exception("could not delete sample object %s (it is now unreferenced)", key)


async def list_samples(
    session: AsyncSession, user_id: uuid.UUID, *, offset: int, limit: int
) -> tuple[list[Sample], int, int]:
    """A page of the user's samples (newest first), their count and their total size."""
    rows = list(
        (
            await session.execute(
                select(Sample)
                .where(Sample.user_id == user_id)
                .order_by(Sample.created_at.desc(), Sample.id)
                .offset(offset)
                .limit(limit)
            )
        ).scalars()
    )
    count, total = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(Sample.file_size), 0)).where(
                Sample.user_id == user_id
            )
        )
    ).one()
    return rows, int(count), int(total)


async def get_owned_sample(session: AsyncSession, sample_id: uuid.UUID, user_id: uuid.UUID) -> Sample | None:
    """The sample if ``user_id`` owns it; None otherwise (others' samples do not exist for them)."""
    sample = await session.get(Sample, sample_id)
    return sample if sample is not None and sample.user_id == user_id else None


async def delete_sample(db: Database, blobs: BlobStore, *, sample_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """Delete the row, then the object. False if the caller owns no such sample."""
    async with db.write_session() as session:
        sample = await get_owned_sample(session, sample_id, user_id)
        if sample is None:
            return False
        key = sample.storage_key
        await session.delete(sample)
    await _delete_quietly(blobs, [key])
    return True


async def delete_user_samples(session: AsyncSession, blobs: BlobStore, user_id: uuid.UUID) -> int:
    """Delete every sample row of ``user_id`` and its objects (account deletion, anonymous purge).

    The rows are deleted in the caller's transaction and the objects right away; call it
    last in that transaction. Returns how many samples were deleted.
    """
    keys = list(
        (await session.execute(select(Sample.storage_key).where(Sample.user_id == user_id))).scalars()
    )
    if keys:
        await session.execute(delete(Sample).where(Sample.user_id == user_id))
        await session.flush()
        await _delete_quietly(blobs, keys)
    return len(keys)


def referenced_sample_ids(content: Mapping[str, Any]) -> list[str]:
    """The distinct ``sample:<id>`` sound ids of a loop's steps, in order of first use."""
    seen: dict[str, None] = {}
    for step in content.get("iconSequence") or ():
        sound = step.get("soundId") if isinstance(step, Mapping) else None
        if isinstance(sound, str) and sound.startswith(SOUND_ID_PREFIX):
            seen.setdefault(sound[len(SOUND_ID_PREFIX) :], None)
    return list(seen)


async def samples_referenced(
    session: AsyncSession,
    content: Mapping[str, Any],
    blobs: BlobStore,
    *,
    loop_owner_id: uuid.UUID,
    forked_from: uuid.UUID | None,
    reader_id: uuid.UUID | None,
) -> list[SampleRef]:
    """The samples a loop's content references, with URLs its reader can fetch.

    The caller has already decided the reader may read the loop. A sample is shared by its
    owner, through the loops they make with it, so a reference resolves only when the sample
    belongs to the loop's owner or to the reader, or when the loop is a fork (of a fork, up
    to ``MAX_FORK_ANCESTORS``) of a loop of the sample's owner that uses it and that the
    reader may read. Any other reference comes back ``missing``, exactly like an unknown or
    deleted sample: a sample id put into one's own loop reveals nothing that
    ``GET /api/samples/:id`` would not.
    """
    ids = referenced_sample_ids(content)
    if not ids:
        return []
    parsed = {raw: sample_id for raw in ids if (sample_id := _parse_sample_id(raw)) is not None}
    found: dict[uuid.UUID, Sample] = {}
    if parsed:
        result = await session.execute(select(Sample).where(Sample.id.in_(set(parsed.values()))))
        found = {s.id: s for s in result.scalars()}
    shared = {i: s for i, s in found.items() if s.user_id in (loop_owner_id, reader_id)}
    through_forks = {i: s for i, s in found.items() if i not in shared}
    if through_forks and forked_from is not None:
        shared.update(await _shared_by_ancestors(session, forked_from, through_forks, reader_id))
    refs = []
    for raw in ids:
        sample = shared.get(parsed[raw]) if raw in parsed else None
        if sample is None:
            refs.append(SampleRef(id=raw, name=None, url=None, duration=None))
        else:
            url = await blobs.url(sample.storage_key)
            refs.append(SampleRef(id=str(sample.id), name=sample.name, url=url, duration=sample.duration))
    return refs


def _parse_sample_id(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


async def _shared_by_ancestors(
    session: AsyncSession, parent_id: uuid.UUID, wanted: dict[uuid.UUID, Sample], reader_id: uuid.UUID | None
) -> dict[uuid.UUID, Sample]:
    """Which of ``wanted`` an ancestor of a fork shares with the reader: a loop of the
    sample's owner that uses it (as last stored) and that the reader may read."""
    shared: dict[uuid.UUID, Sample] = {}
    next_id: uuid.UUID | None = parent_id
    for _ in range(MAX_FORK_ANCESTORS):
        if next_id is None or len(shared) == len(wanted):
            break
        row = (
            await session.execute(
                select(Loop.user_id, Loop.forked_from, Loop.icon_sequence).where(Loop.id == next_id)
            )
        ).one_or_none()
        if row is None:
            break
        owner_id, ancestor_id, steps = row
        theirs = {i for i, s in wanted.items() if s.user_id == owner_id and i not in shared}
        if theirs:
            used = {_parse_sample_id(raw) for raw in referenced_sample_ids({"iconSequence": steps})}
            if theirs & used:
                rules = await load_access_rules(session, Loop, next_id)
                if rules is not None and rules.role(reader_id) is not None:
                    shared.update({i: wanted[i] for i in theirs & used})
        next_id = ancestor_id
    return shared
