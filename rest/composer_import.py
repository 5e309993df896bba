"""``POST /api/migrate``: the composer's localStorage loops and songs become live documents.

One bad item never stops the others: each is validated alone (with the same models as
REST create, so both the seed's and the composer's spellings are accepted) and reported in
``errors``. Local ids already migrated are answered from the stored mapping (idempotent,
also for two identical requests at once); their content is not looked at again.

A full payload is seconds of CPU, so a run is charged and checked before it costs anything,
and the CPU work runs in the worker process (``rest.cpu_worker``, ``rest.composer_import_work``);
docs/community.md says what is charged:

1. the worker reads the body's local ids; one short locked transaction reads their mappings
   and, if the payload names any new one, checks the hourly limit (429) and charges the run,
   committed at once: whatever happens to the run later, it counted;
2. the worker validates the new items, checks the quotas against what is valid (403),
   remaps song timelines and makes every document's first CRDT update (once, as REST create);
3. one short locked transaction creates everything and records what the run created.

Runs of one account are serialized on an instance (``AccountLocks``), so a second identical
request finds the first one's mappings; across instances the account row lock and the
unique mapping key keep an item from being created twice (a run that finds its items
mapped by another one meanwhile is a 409: sent again, it is answered from the mapping).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import TypeVar

from aiohttp import web

from rest import composer_import_work as work
from rest.community_schemas import MigrateResponse
from rest.context import context, json_model, read_body, require_caller
from rest.cpu_worker import CPU_WORKER
from rest.errors import BadRequest, UnsupportedMediaType
from storage import composer_import as imports
from storage.errors import Conflict, QuotaExceeded

KINDS = work.KINDS
T = TypeVar("T")
# Rows per INSERT statement, and their JSON columns: the statement's parameters are built on
# the event loop, so a large migration is inserted in slices that each hold it briefly.
INSERT_ROWS = 50
INSERT_BYTES = 64 * 1024


class AccountLocks:
    """One lock per account, held while that account's migration runs on this instance;
    an account's entry lives only while someone holds or waits for its lock."""

    def __init__(self) -> None:
        self._locks: dict[uuid.UUID, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, user_id: uuid.UUID) -> AsyncIterator[None]:
        lock, users = self._locks.get(user_id, (asyncio.Lock(), 0))
        self._locks[user_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[user_id]
            if users == 1:
                del self._locks[user_id]
            else:
                self._locks[user_id] = (lock, users - 1)


MIGRATION_LOCKS = web.AppKey("migration_locks", AccountLocks)


async def _body(request: web.Request) -> bytes:
    """The raw JSON body; it is parsed in the worker process, not here."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType("send the body as application/json")
    body = await read_body(request)
    if not body:
        raise BadRequest("request body is empty; send a JSON object")
    return body


def _checked(result: T | work.BadBody) -> T:
    if isinstance(result, work.BadBody):
        raise BadRequest(result.message, details=result.details)
    return result


def _slices(rows: list[work.NewRow]) -> list[list[work.NewRow]]:
    slices: list[list[work.NewRow]] = [[]]
    size = 0
    for row in rows:
        if slices[-1] and (len(slices[-1]) >= INSERT_ROWS or size + len(row.columns) > INSERT_BYTES):
            slices.append([])
            size = 0
        slices[-1].append(row)
        size += len(row.columns)
    return slices


async def migrate(request: web.Request) -> web.Response:
    ctx = context(request)
    caller = await require_caller(request)
    body = await _body(request)
    worker = request.app[CPU_WORKER]
    user_id = caller.user_id
    scanned = _checked(await worker.run(work.scan, body))
    async with request.app[MIGRATION_LOCKS].hold(user_id):
        # 1. What was migrated before; a run naming anything new is checked and charged.
        async with ctx.db.write_session() as session:
            await imports.lock_account(session, user_id)
            known = {
                kind.plural: await imports.mappings(
                    session, user_id=user_id, kind=kind.name, local_ids=scanned.ids[kind.plural]
                )
                for kind in KINDS
            }
            fresh = {k.plural: set(scanned.ids[k.plural]) - known[k.plural].keys() for k in KINDS}
            run_id = None
            if any(fresh.values()):
                if ctx.settings.rate_limits_enabled:
                    await imports.check_rate(
                        session, user_id, per_hour=ctx.settings.rate_limit_migrations_per_hour
                    )
                run_id = await imports.charge_run(session, user_id=user_id)
        built = None
        if run_id is not None:
            built = await _run(request, body, user_id, run_id, scanned, known, fresh)
    issues = scanned.issues + (built.errors if built else [])
    mapping = {kind.plural: dict(known[kind.plural]) for kind in KINDS}
    created = {kind.plural: 0 for kind in KINDS}
    for plural, rows in (built.rows if built else {}).items():
        mapping[plural].update((row.local_id, row.id) for row in rows)
        created[plural] = len(rows)
    response = MigrateResponse.model_validate(
        {
            **{
                kind.plural: {
                    "created": created[kind.plural],
                    "failed": sum(1 for (k, _), _ in issues if KINDS[k] is kind),
                    "already_migrated": len(known[kind.plural]),
                }
                for kind in KINDS
            },
            "id_mapping": mapping,
            "errors": [issue for _, issue in sorted(issues, key=lambda placed: placed[0])],
            "warnings": built.warnings if built else [],
        }
    )
    return json_model(response)


def _over_quota(refused: work.OverQuota) -> QuotaExceeded:
    plural = f"{refused.kind}s"
    return QuotaExceeded(
        f"{plural} quota: you have {refused.existing}, this migration adds {refused.requested}, "
        f"at most {refused.quota} allowed; nothing was migrated "
        "(the attempt counts against the hourly migration limit)",
        details=[
            {
                "kind": refused.kind,
                "quota": refused.quota,
                "existing": refused.existing,
                "requested": refused.requested,
            }
        ],
    )


async def _run(
    request: web.Request,
    body: bytes,
    user_id: uuid.UUID,
    run_id: uuid.UUID,
    scanned: work.Scanned,
    known: dict[str, dict[str, uuid.UUID]],
    fresh: dict[str, set[str]],
) -> work.Built:
    """Steps 2 and 3 of a charged run (module docstring)."""
    ctx = context(request)
    quotas = {kind.plural: kind.quota(ctx.settings) for kind in KINDS}
    async with ctx.db.session() as session:
        earlier = await imports.mappings(
            session, user_id=user_id, kind="loop", local_ids=set(scanned.referenced) - fresh["loops"]
        )
        library = await imports.owned_loops(
            session, user_id=user_id, ids=filter(None, map(_parse_uuid, scanned.referenced))
        )
        existing = {k.plural: await imports.document_count(session, k.model, user_id) for k in KINDS}
    loop_map = {local: str(doc_id) for local, doc_id in {**earlier, **known["loops"]}.items()}
    result = await request.app[CPU_WORKER].run(
        work.build,
        body,
        fresh=fresh,
        loop_map=loop_map,
        library={str(loop_id) for loop_id in library},
        existing=existing,
        quotas=quotas,
    )
    if isinstance(result, work.OverQuota):
        raise _over_quota(result)
    built = _checked(result)
    adding = {plural: len(rows) for plural, rows in built.rows.items()}
    async with ctx.db.write_session() as session:
        await imports.lock_account(session, user_id)
        for kind in KINDS:
            ours = {row.local_id for row in built.rows[kind.plural]}
            taken = await imports.mappings(session, user_id=user_id, kind=kind.name, local_ids=ours)
            if taken:
                raise Conflict(
                    f"{len(taken)} of these {kind.plural} were migrated by another request at the "
                    "same time; send the migration again (what was migrated is answered from the "
                    "mapping)",
                    details=[{"kind": kind.name, "localIds": sorted(taken)[:20]}],
                )
        for kind in KINDS:
            have = await imports.document_count(session, kind.model, user_id)
            if adding[kind.plural] and have + adding[kind.plural] > quotas[kind.plural]:
                raise _over_quota(work.OverQuota(kind.name, quotas[kind.plural], have, adding[kind.plural]))
        for kind in KINDS:
            for rows in _slices(built.rows[kind.plural]):
                documents = [
                    imports.NewDocument(
                        row.local_id, row.id, {**json.loads(row.columns), "doc_state": row.doc_state}
                    )
                    for row in rows
                ]
                await imports.insert_documents(
                    session, kind.model, user_id=user_id, kind=kind.name, documents=documents
                )
        await imports.finish_run(session, run_id, loops=adding["loops"], songs=adding["songs"])
    return built


def _parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
