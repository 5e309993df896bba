"""Reports and the admin routes. Hidden content vanishes for everyone but its owner and
admins (the rule: storage.access.is_visible); live rooms drop the others at once."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from events import outbox
from music.kinds import DocKind
from rest.comments import push_moderation
from rest.community_schemas import (
    HideRequest,
    ModerationState,
    ReportCreate,
    ReportList,
    ReportPublic,
    ReportsQuery,
    ResolveReport,
)
from rest.context import RestContext, context, json_model, path_uuid, read_json, read_query, require_caller
from rest.openapi import Handler
from storage import moderation
from storage.errors import Forbidden
from storage.models import Comment, Loop, Report, Song, User

# URL segment -> resource type.
ADMIN_RESOURCES = {"loops": "loop", "songs": "song", "users": "user", "comments": "comment"}


async def require_admin(request: web.Request) -> uuid.UUID:
    ctx = context(request)
    caller = await require_caller(request)
    async with ctx.db.session() as session:
        if not await moderation.is_admin(session, caller.user_id, ctx.settings.admin_user_ids):
            raise Forbidden("only moderators may do this")
    return caller.user_id


async def _visibility_changed(ctx: RestContext, change: moderation.VisibilityChange) -> None:
    """Apply a hide / unhide to what is live: read caches, open rooms, comment lists."""
    resource = change.resource
    if isinstance(resource, Loop | Song):
        kind = DocKind.LOOP if isinstance(resource, Loop) else DocKind.SONG
        ctx.documents.read_cache.invalidate(kind.value, resource.id)
        await ctx.documents.access_changed(kind, resource.id)
    elif isinstance(resource, Comment):
        async with ctx.db.session() as session:
            author = await session.get(User, resource.author_id)
        if author is not None:
            await push_moderation(ctx, change, author)


def _state(resource_type: str, resource: Loop | Song | User | Comment) -> ModerationState:
    return ModerationState(
        resource_type=resource_type,  # type: ignore[arg-type]
        resource_id=resource.id,
        hidden=resource.hidden_at is not None,
        hidden_reason=resource.hidden_reason,
    )


def _report_ref(report: Report) -> dict[str, Any]:
    return {"id": str(report.id), "resourceType": report.resource_type, "resourceId": str(report.resource_id)}


async def create_report(request: web.Request) -> web.Response:
    ctx = context(request)
    caller = await require_caller(request)
    payload = await read_json(request, ReportCreate)
    async with ctx.db.write_session() as session:
        report = await moderation.create_report(
            session,
            reporter_id=caller.user_id,
            resource_type=payload.resource_type,
            resource_id=payload.resource_id,
            reason=payload.reason,
        )
        await outbox.record(
            session, "report.created", {"report": _report_ref(report)}, actor_id=caller.user_id
        )
    return json_model(ReportPublic.model_validate(report), status=201)


async def list_reports(request: web.Request) -> web.Response:
    ctx = context(request)
    await require_admin(request)
    query = read_query(request, ReportsQuery)
    async with ctx.db.session() as session:
        rows, total = await moderation.list_reports(
            session, status=query.status, offset=(query.page - 1) * query.limit, limit=query.limit
        )
    return json_model(
        ReportList(
            reports=[ReportPublic.model_validate(r) for r in rows],
            total=total,
            page=query.page,
            has_more=query.page * query.limit < total,
        )
    )


async def resolve_report(request: web.Request) -> web.Response:
    ctx = context(request)
    report_id = path_uuid(request)
    admin_id = await require_admin(request)
    payload = await read_json(request, ResolveReport)
    async with ctx.db.write_session() as session:
        report, hidden = await moderation.resolve_report(
            session, report_id=report_id, action=payload.action, admin_id=admin_id, reason=payload.reason
        )
        await outbox.record(
            session,
            "report.resolved",
            {
                "report": _report_ref(report),
                "resolution": report.resolution,
                "userId": str(report.reporter_id),
            },
            actor_id=admin_id,
        )
    if hidden is not None:
        await _visibility_changed(ctx, hidden)
    return json_model(ReportPublic.model_validate(report))


def visibility_handler(segment: str, *, hide: bool) -> Handler:
    """``POST /api/admin/<segment>/{id}/hide`` (body ``{reason}``) or ``/unhide``."""
    resource_type = ADMIN_RESOURCES[segment]

    async def handler(request: web.Request) -> web.Response:
        ctx = context(request)
        resource_id = path_uuid(request)
        await require_admin(request)
        reason = (await read_json(request, HideRequest)).reason if hide else None
        async with ctx.db.write_session() as session:
            change = await moderation.set_hidden(session, resource_type, resource_id, reason=reason)
        await _visibility_changed(ctx, change)
        return json_model(_state(resource_type, change.resource))

    handler.__name__ = f"{'hide' if hide else 'unhide'}_{resource_type}"
    return handler
