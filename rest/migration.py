"""``POST /api/migrate``: the composer's localStorage loops and songs become live documents.

One bad item never stops the others: each is validated alone (with the same models as
REST create, so both the seed's and the composer's spellings are accepted) and reported
in ``errors``. What is valid is created in one transaction, under the account's row lock:
already-migrated local ids are answered from the stored mapping (idempotent, also for two
identical requests at once), the hourly limit counts only runs that create something, and
quotas are checked for the whole payload before anything is created.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pycrdt import Doc
from pydantic import BaseModel, ValidationError

from music.columns import content_columns
from realtime import docschema
from rest.community_schemas import MigrateRequest, MigrateResponse
from rest.context import context, json_model, read_json, require_caller
from rest.documents import LOOPS, SONGS, DocumentKind, creation_content
from rest.errors import validation_details
from storage import migration_import as imports
from storage.errors import QuotaExceeded

MAX_LOCAL_ID = 128


@dataclass
class Item:
    """One local item that passed validation."""

    local_id: str
    payload: BaseModel


@dataclass
class Outcome:
    """What a migration produced, per kind, and what it reports."""

    mapping: dict[str, dict[str, uuid.UUID]] = field(default_factory=lambda: {"loops": {}, "songs": {}})
    created: dict[str, int] = field(default_factory=lambda: {"loops": 0, "songs": 0})
    failed: dict[str, int] = field(default_factory=lambda: {"loops": 0, "songs": 0})
    existing: dict[str, int] = field(default_factory=lambda: {"loops": 0, "songs": 0})
    errors: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, kind: DocumentKind, local_id: str | None, error: str, details: list[Any]) -> None:
        self.failed[kind.plural] += 1
        self.errors.append({"local_id": local_id, "kind": kind.name, "error": error, "details": details})


def _entries(items: list[Any] | dict[str, Any]) -> list[tuple[str | None, Any, int]]:
    """``(local id, raw item, position)``: an object's keys are the local ids, an array's
    items carry theirs in ``id``."""
    if isinstance(items, dict):
        return [(key, raw, i) for i, (key, raw) in enumerate(items.items())]
    entries = []
    for i, raw in enumerate(items):
        local_id = raw.get("id") if isinstance(raw, dict) else None
        entries.append((local_id if isinstance(local_id, str) else None, raw, i))
    return entries


def _validate(kind: DocumentKind, items: list[Any] | dict[str, Any], outcome: Outcome) -> list[Item]:
    valid: list[Item] = []
    seen: set[str] = set()
    for local_id, raw, position in _entries(items):
        where = [{"index": position}]
        if not local_id or len(local_id) > MAX_LOCAL_ID:
            outcome.fail(
                kind, local_id, f"a {kind.name} needs an id of 1 to {MAX_LOCAL_ID} characters", where
            )
            continue
        if local_id in seen:
            outcome.fail(kind, local_id, f"the id {local_id!r} appears twice in the payload", where)
            continue
        seen.add(local_id)
        if not isinstance(raw, dict):
            outcome.fail(kind, local_id, f"a {kind.name} must be a JSON object", where)
            continue
        try:
            payload = kind.create.model_validate(raw)
        except ValidationError as exc:
            details = validation_details(exc)
            outcome.fail(kind, local_id, f"invalid {kind.name}: {details[0]['message']}", details)
            continue
        valid.append(Item(local_id, payload))
    return valid


def _document_values(kind: DocumentKind, content: dict[str, Any], is_public: bool) -> dict[str, Any]:
    """The row of a new document, with its first CRDT update made once (as REST create)."""
    state = docschema.content_to_update(kind.doc_kind, content)
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    values = content_columns(docschema.doc_to_content(kind.doc_kind, doc))
    values.update(is_public=is_public, doc_state=state)
    return values


def _parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def migrate(request: web.Request) -> web.Response:
    ctx = context(request)
    caller = await require_caller(request)
    body = await read_json(request, MigrateRequest)
    outcome = Outcome()
    loops = _validate(LOOPS, body.loops, outcome)
    songs = _validate(SONGS, body.songs, outcome)
    failed_loops = {e["local_id"] for e in outcome.errors if e["kind"] == "loop"}
    user_id = caller.user_id

    async with ctx.db.write_session() as session:
        await imports.lock_account(session, user_id)
        referenced = {block.loop_id for song in songs for block in song.payload.timeline}  # type: ignore[attr-defined]
        loop_map = await imports.mappings(
            session, user_id=user_id, kind="loop", local_ids={i.local_id for i in loops} | referenced
        )
        song_map = await imports.mappings(
            session, user_id=user_id, kind="song", local_ids={i.local_id for i in songs}
        )
        library = await imports.owned_loops(
            session, user_id=user_id, ids=filter(None, map(_parse_uuid, referenced))
        )

        new_loops: list[imports.NewDocument] = []
        for item in loops:
            if item.local_id in loop_map:
                outcome.existing["loops"] += 1
                continue
            try:
                values = _document_values(LOOPS, creation_content(item.payload), item.payload.is_public)  # type: ignore[attr-defined]
            except ValueError as exc:
                outcome.fail(LOOPS, item.local_id, f"invalid loop: {exc}", [])
                continue
            new = imports.NewDocument(item.local_id, uuid.uuid4(), values)
            new_loops.append(new)
            loop_map[item.local_id] = new.id

        new_songs: list[imports.NewDocument] = []
        for item in songs:
            if item.local_id in song_map:
                outcome.existing["songs"] += 1
                continue
            content = creation_content(item.payload)
            timeline, dropped = [], []
            for block in content["timeline"]:
                local_loop = block["loopId"]
                target = loop_map.get(local_loop)
                if target is None and (as_uuid := _parse_uuid(local_loop)) in library:
                    target = as_uuid
                if target is None:
                    why = (
                        "failed to migrate"
                        if local_loop in failed_loops
                        else "is not in the payload or your library"
                    )
                    dropped.append({"blockId": block["id"], "loopId": local_loop, "reason": f"loop {why}"})
                    continue
                timeline.append({**block, "loopId": str(target)})
            content["timeline"] = timeline
            try:
                values = _document_values(SONGS, content, item.payload.is_public)  # type: ignore[attr-defined]
            except ValueError as exc:
                outcome.fail(SONGS, item.local_id, f"invalid song: {exc}", [])
                continue
            if dropped:
                outcome.warnings.append(
                    {
                        "local_id": item.local_id,
                        "kind": "song",
                        "error": f"{len(dropped)} timeline block(s) left out: their loop is unknown",
                        "details": dropped,
                    }
                )
            new = imports.NewDocument(item.local_id, uuid.uuid4(), values)
            new_songs.append(new)
            song_map[item.local_id] = new.id

        if new_loops or new_songs:
            if ctx.settings.rate_limits_enabled:
                await imports.check_rate(
                    session, user_id, per_hour=ctx.settings.rate_limit_migrations_per_hour
                )
            for kind, batch in ((LOOPS, new_loops), (SONGS, new_songs)):
                quota = kind.quota(ctx.settings)
                have = await imports.document_count(session, kind.model, user_id)
                if have + len(batch) > quota:
                    raise QuotaExceeded(
                        f"{kind.plural} quota: you have {have}, this migration adds {len(batch)}, "
                        f"at most {quota} allowed; nothing was migrated",
                        details=[
                            {"kind": kind.name, "quota": quota, "existing": have, "requested": len(batch)}
                        ],
                    )
            await imports.insert_documents(
                session, LOOPS.model, user_id=user_id, kind="loop", documents=new_loops
            )
            await imports.insert_documents(
                session, SONGS.model, user_id=user_id, kind="song", documents=new_songs
            )
            await imports.record_run(session, user_id=user_id, loops=len(new_loops), songs=len(new_songs))
        outcome.created = {"loops": len(new_loops), "songs": len(new_songs)}

    sent = {"loops": {i.local_id for i in loops}, "songs": {i.local_id for i in songs}}
    response = MigrateResponse.model_validate(
        {
            "loops": {
                "created": outcome.created["loops"],
                "failed": outcome.failed["loops"],
                "already_migrated": outcome.existing["loops"],
            },
            "songs": {
                "created": outcome.created["songs"],
                "failed": outcome.failed["songs"],
                "already_migrated": outcome.existing["songs"],
            },
            "id_mapping": {
                "loops": {k: v for k, v in loop_map.items() if k in sent["loops"]},
                "songs": {k: v for k, v in song_map.items() if k in sent["songs"]},
            },
            "errors": outcome.errors,
            "warnings": outcome.warnings,
        }
    )
    return json_model(response)
