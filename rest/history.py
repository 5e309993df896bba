"""The version history over REST: activity, versions, time travel, compare, restore, undo.

Rights: owners and editors do everything; viewers (collaborators with the viewer role,
readers of a public document, share-link holders) may list and read versions only when the
owner has allowed it (``viewersMayRead``, off by default); only the owner changes that.
The work is the document service's (``realtime.history``).
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from identity.authenticator import Caller
from music.changes import diff
from music.roles import Role
from realtime.history import VersionHistory, parse_when
from rest.context import (
    context,
    json_model,
    optional_caller,
    path_uuid,
    read_json,
    read_query,
    require_caller,
)
from rest.errors import BadRequest
from rest.history_schemas import (
    Activity,
    ActivityQuery,
    AtQuery,
    CompareQuery,
    Comparison,
    ContentAt,
    HistoryQuery,
    HistorySettings,
    HistorySettingsUpdate,
    Restored,
    RevertRequest,
    VersionCreate,
    VersionDetail,
    VersionList,
    VersionSummary,
)
from rest.library import DocumentKind
from rest.responses import json_response
from rest.schemas import Success
from rest.sharing import create_fork, document_with_role
from storage import history as kept
from storage.errors import Forbidden, HistoryPrivate, NotFound
from storage.models import DocumentVersion, utcnow


def _when(value: str, field: str) -> Any:
    try:
        return parse_when(value)
    except ValueError:
        raise BadRequest(f"{field}: not an ISO 8601 time", details=[{"field": field}]) from None


def _summary(version: DocumentVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "name": version.name,
        "automatic": version.name is None,
        "created_at": version.created_at,
        "created_by": version.created_by,
        "authors": list(version.authors),
        "summary": dict(version.summary),
    }


class HistoryHandlers:
    """The history routes of one kind (loops or songs)."""

    def __init__(self, kind: DocumentKind) -> None:
        self.kind = kind

    def _history(self, request: web.Request) -> VersionHistory:
        return context(request).documents.history

    async def _reader(self, request: web.Request, share_token: str | None) -> uuid.UUID:
        """The document id if the caller may read its history: 404 if they cannot read the
        document, 403 ``history_private`` if only its owner and editors may."""
        ctx = context(request)
        caller = await optional_caller(request)
        row, role = await document_with_role(
            ctx,
            self.kind,
            path_uuid(request),
            user_id=caller.user_id if caller else None,
            share_token=share_token,
        )
        if not role.can_write:
            async with ctx.db.session() as session:
                settings = await kept.settings_of(session, row.id)
            if settings is None or not settings.viewers_may_read:
                raise HistoryPrivate(f"the owner keeps this {self.kind.name}'s history to its editors")
        return row.id

    async def _writer(self, request: web.Request, *, owner_only: bool = False) -> tuple[uuid.UUID, Caller]:
        """The document id if the caller owns it (or, unless ``owner_only``, edits it)."""
        ctx = context(request)
        caller = await require_caller(request)
        row, role = await document_with_role(ctx, self.kind, path_uuid(request), user_id=caller.user_id)
        if role is not Role.OWNER and (owner_only or not role.can_write):
            who = "owner" if owner_only else "owner and editors"
            raise Forbidden(f"only the {who} may do this to the {self.kind.name}'s history")
        return row.id, caller

    # --- reading ----------------------------------------------------------------------

    async def activity(self, request: web.Request) -> web.Response:
        query = read_query(request, ActivityQuery)
        since = _when(query.since, "since") if query.since else None
        doc_id = await self._reader(request, query.share_token)
        entries = await self._history(request).activity(self.kind.doc_kind, doc_id, since=since)
        return json_model(Activity.model_validate({"activity": entries}))

    async def list_versions(self, request: web.Request) -> web.Response:
        query = read_query(request, HistoryQuery)
        doc_id = await self._reader(request, query.share_token)
        rows = await kept.list_versions(context(request).db, doc_id)
        versions = [
            {
                "id": version_id,
                "name": name,
                "automatic": name is None,
                "created_at": created_at,
                "created_by": created_by,
                "authors": authors,
                "summary": summary,
            }
            for version_id, name, created_at, created_by, authors, summary in rows
        ]
        return json_model(VersionList.model_validate({"versions": versions}))

    async def read_version(self, request: web.Request) -> web.Response:
        query = read_query(request, HistoryQuery)
        version_id = path_uuid(request, "versionId")
        doc_id = await self._reader(request, query.share_token)
        version, content = await self._history(request).version_content(
            self.kind.doc_kind, doc_id, version_id
        )
        return json_model(VersionDetail.model_validate(_summary(version) | {"content": content}))

    async def at(self, request: web.Request) -> web.Response:
        query = read_query(request, AtQuery)
        when = _when(query.t, "t")
        doc_id = await self._reader(request, query.share_token)
        when = min(when, utcnow())
        content = await self._history(request).content_at(self.kind.doc_kind, doc_id, when)
        return json_model(ContentAt.model_validate({"at": when, "content": content}))

    async def _resolve(self, request: web.Request, doc_id: uuid.UUID, ref: str, field: str) -> dict[str, Any]:
        """Content named by ``ref``: ``now``, a version id, or a time."""
        history = self._history(request)
        if ref == "now":
            return await history.live_content(self.kind.doc_kind, doc_id)
        try:
            version_id = uuid.UUID(ref)
        except ValueError:
            return await history.content_at(self.kind.doc_kind, doc_id, min(_when(ref, field), utcnow()))
        _version, content = await history.version_content(self.kind.doc_kind, doc_id, version_id)
        return content

    async def compare(self, request: web.Request) -> web.Response:
        query = read_query(request, CompareQuery)
        doc_id = await self._reader(request, query.share_token)
        before = await self._resolve(request, doc_id, query.from_, "from")
        after = await self._resolve(request, doc_id, query.to, "to")
        return json_response(Comparison.model_validate(diff(self.kind.doc_kind, before, after).as_json()))

    async def settings(self, request: web.Request) -> web.Response:
        query = read_query(request, HistoryQuery)
        ctx = context(request)
        caller = await optional_caller(request)
        row, _role = await document_with_role(
            ctx,
            self.kind,
            path_uuid(request),
            user_id=caller.user_id if caller else None,
            share_token=query.share_token,
        )
        async with ctx.db.session() as session:
            found = await kept.settings_of(session, row.id)
        return json_model(HistorySettings(viewers_may_read=bool(found and found.viewers_may_read)))

    # --- writing ----------------------------------------------------------------------

    async def update_settings(self, request: web.Request) -> web.Response:
        doc_id, _caller = await self._writer(request, owner_only=True)
        payload = await read_json(request, HistorySettingsUpdate)
        async with context(request).db.write_session() as session:
            await kept.set_viewers_may_read(session, self.kind.name, doc_id, payload.viewers_may_read)
        return json_model(HistorySettings(viewers_may_read=payload.viewers_may_read))

    async def create_version(self, request: web.Request) -> web.Response:
        doc_id, caller = await self._writer(request)
        payload = await read_json(request, VersionCreate)
        version = await self._history(request).name_version(
            self.kind.doc_kind, doc_id, payload.name, caller.user_id
        )
        return json_model(VersionSummary.model_validate(_summary(version)), status=201)

    async def delete_version(self, request: web.Request) -> web.Response:
        version_id = path_uuid(request, "versionId")
        doc_id, _caller = await self._writer(request)
        async with context(request).db.write_session() as session:
            version = await kept.get_version(session, doc_id, version_id)
            if version is None:
                raise NotFound("version not found")
            await session.delete(version)
        return json_model(Success())

    async def restore(self, request: web.Request) -> web.Response:
        version_id = path_uuid(request, "versionId")
        doc_id, caller = await self._writer(request)
        content = await self._history(request).restore(
            self.kind.doc_kind, doc_id, version_id, user_id=caller.user_id
        )
        return json_model(Restored(content=content))

    async def revert(self, request: web.Request) -> web.Response:
        doc_id, caller = await self._writer(request)
        payload = await read_json(request, RevertRequest)
        since = _when(payload.since, "since")
        try:
            content = await self._history(request).revert(
                self.kind.doc_kind, doc_id, person=payload.user_id, since=since, user_id=caller.user_id
            )
        except ValueError as exc:
            raise BadRequest(f"these changes cannot be undone on their own: {exc}") from None
        return json_model(Restored(content=content))

    async def fork_version(self, request: web.Request) -> web.Response:
        query = read_query(request, HistoryQuery)
        version_id = path_uuid(request, "versionId")
        caller = await require_caller(request)
        doc_id = await self._reader(request, query.share_token)
        _version, content = await self._history(request).version_content(
            self.kind.doc_kind, doc_id, version_id
        )
        content = {key: value for key, value in content.items() if key != "totalBars"}
        row = await create_fork(context(request), self.kind, doc_id, caller.user_id, content)
        return json_response(
            self.kind.public.model_validate(row).model_dump(mode="json", by_alias=True), status=201
        )
