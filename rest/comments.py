"""Comments on loops and songs, pushed live to the document's room as the ``comment`` event.

Who may read them: whoever may read the document (owner, public, share token, admins);
a comment hidden by a moderator, or written by a hidden account, only its author and admins
(``storage.comments.visible_to``), over REST and live alike: its events reach only their
sockets, on every instance. Who may write: anyone signed in (anonymous accounts included)
who may read it; a share token alone reads but never writes. Edits are the author's;
deletions the author's, the document owner's or an admin's.
"""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from events import outbox
from music.kinds import DocKind
from music.roles import Role
from realtime.rooms import EVERYONE, Audience
from rest.community_schemas import (
    CommentCreate,
    CommentList,
    CommentPublic,
    CommentsQuery,
    CommentUpdate,
    Owner,
)
from rest.context import (
    RestContext,
    context,
    json_model,
    optional_caller,
    path_uuid,
    read_json,
    read_query,
    require_caller,
)
from rest.library import DocumentKind
from rest.schemas import Success
from storage import comments as stored
from storage import moderation
from storage.access import resolve_role
from storage.errors import Forbidden, NotFound
from storage.kinds import document_model
from storage.models import Comment, Loop, Song, User

COMMENT_EVENT = "comment"


def comment_model(comment: Comment, author: User) -> CommentPublic:
    fields = {name: getattr(comment, name) for name in CommentPublic.model_fields if name != "author"}
    return CommentPublic.model_validate({**fields, "author": Owner.model_validate(author)})


def comment_json(comment: Comment, author: User, *, as_shown_before: bool = False) -> dict[str, Any]:
    """The comment as REST returns it; ``as_shown_before``: as everyone saw it before a
    moderator hid it (never the hiding reason)."""
    model = comment_model(comment, author)
    if as_shown_before:
        model = model.model_copy(update={"hidden_at": None, "hidden_reason": None})
    return dict(model.model_dump(mode="json", by_alias=True))


async def _send(
    ctx: RestContext, comment: Comment, action: str, data: dict[str, Any], audience: Audience
) -> None:
    await ctx.documents.broadcast(
        DocKind(comment.resource_type),
        comment.resource_id,
        COMMENT_EVENT,
        {"action": action, "comment": data},
        audience,
    )


async def _privileged(ctx: RestContext, comment: Comment) -> frozenset[uuid.UUID]:
    """Who sees the comment even when it is hidden: its author and every admin."""
    async with ctx.db.session() as session:
        admins = await moderation.admin_ids(session, ctx.settings.admin_user_ids)
    return admins | {comment.author_id}


async def push(ctx: RestContext, comment: Comment, author: User, action: str) -> None:
    """Tell the document's live room: ``comment`` ``{action, comment}``, to the sockets of
    those who may read the comment (everyone, unless it or its author is hidden)."""
    if stored.shown_to_everyone(comment, author):
        await _send(ctx, comment, action, comment_json(comment, author), EVERYONE)
        return
    only = Audience(await _privileged(ctx, comment), only=True)
    await _send(ctx, comment, action, comment_json(comment, author), only)


async def push_moderation(ctx: RestContext, change: moderation.VisibilityChange, author: User) -> None:
    """A moderator hid or unhid a comment. Its author and admins, who see it either way, get
    ``edited`` (with ``hidden``); everyone else ``deleted`` when it disappears for them, or
    ``created`` when it appears (unless its author is hidden)."""
    comment = change.resource
    assert isinstance(comment, Comment)
    privileged = await _privileged(ctx, comment)
    await _send(ctx, comment, "edited", comment_json(comment, author), Audience(privileged, only=True))
    was_shown = not change.was_hidden and author.hidden_at is None
    shown = stored.shown_to_everyone(comment, author)
    others = Audience(privileged, only=False)
    if was_shown and not shown:
        await _send(ctx, comment, "deleted", comment_json(comment, author, as_shown_before=True), others)
    elif shown and not was_shown:
        await _send(ctx, comment, "created", comment_json(comment, author), others)


async def document_access(
    ctx: RestContext,
    session: AsyncSession,
    resource_type: str,
    document_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None,
    share_token: str | None = None,
) -> tuple[Loop | Song, Role | None, bool]:
    """The document, the caller's role on it and whether the caller is an admin.

    NotFound when the caller may not read it (an admin may read everything).
    """
    document: Loop | Song | None = await session.get(document_model(resource_type), document_id)
    role = (
        await resolve_role(session, document, user_id=user_id, share_token=share_token)
        if document is not None
        else None
    )
    admin = await moderation.is_admin(session, user_id, ctx.settings.admin_user_ids)
    if document is None or (role is None and not admin):
        raise NotFound(f"{resource_type} not found")
    return document, role, admin


async def record_comment(
    session: AsyncSession,
    action: str,
    comment: Comment,
    document: Loop | Song,
    *,
    actor_id: uuid.UUID | None = None,
) -> None:
    """The outbox event of a comment created, edited or deleted (in the same transaction)."""
    shown: dict[str, Any] = {"id": str(comment.id), "authorId": str(comment.author_id)}
    if action != "deleted":
        shown["body"] = comment.body
    await outbox.record(
        session,
        f"{comment.resource_type}.comment_{action}",
        {comment.resource_type: outbox.document_ref(document), "comment": shown},
        actor_id=actor_id or comment.author_id,
        document=document,
    )


class CommentHandlers:
    """The comment routes of one kind of document (loops or songs)."""

    def __init__(self, kind: DocumentKind) -> None:
        self.kind = kind

    async def list(self, request: web.Request) -> web.Response:
        ctx = context(request)
        document_id = path_uuid(request)
        query = read_query(request, CommentsQuery)
        caller = await optional_caller(request)
        user_id = caller.user_id if caller else None
        async with ctx.db.session() as session:
            _document, _role, admin = await document_access(
                ctx, session, self.kind.name, document_id, user_id=user_id, share_token=query.share_token
            )
            rows, total = await stored.list_comments(
                session,
                resource_type=self.kind.name,
                resource_id=document_id,
                viewer_id=user_id,
                viewer_is_admin=admin,
                offset=(query.page - 1) * query.limit,
                limit=query.limit,
            )
        return json_model(
            CommentList.model_validate(
                {
                    "comments": [comment_model(c, a) for c, a in rows],
                    "total": total,
                    "page": query.page,
                    "has_more": query.page * query.limit < total,
                }
            )
        )

    async def create(self, request: web.Request) -> web.Response:
        ctx = context(request)
        document_id = path_uuid(request)
        query = read_query(request, CommentsQuery)
        caller = await require_caller(request)
        payload = await read_json(request, CommentCreate)
        async with ctx.db.write_session() as session:
            document, _role, _admin = await document_access(
                ctx,
                session,
                self.kind.name,
                document_id,
                user_id=caller.user_id,
                share_token=query.share_token,
            )
            author = await session.get(User, caller.user_id)
            if author is None:
                raise NotFound("this account no longer exists")
            comment = await stored.create_comment(
                session,
                resource_type=self.kind.name,
                resource_id=document_id,
                author_id=caller.user_id,
                body=payload.body,
                anchor=payload.anchor.model_dump(exclude_none=True) if payload.anchor else None,
            )
            await record_comment(session, "created", comment, document)
        await push(ctx, comment, author, "created")
        return web.json_response(comment_json(comment, author), status=201)


async def _own_comment(
    request: web.Request,
) -> tuple[RestContext, uuid.UUID, Comment, User, Loop | Song, bool]:
    """The comment (NotFound unless the caller may read it and its document)."""
    ctx = context(request)
    comment_id = path_uuid(request)
    caller = await require_caller(request)
    async with ctx.db.session() as session:
        found = await stored.get_comment(session, comment_id)
        if found is None:
            raise NotFound("comment not found")
        comment, author = found
        document, _role, admin = await document_access(
            ctx, session, comment.resource_type, comment.resource_id, user_id=caller.user_id
        )
    if not stored.visible_to(comment, author, caller.user_id, viewer_is_admin=admin):
        raise NotFound("comment not found")
    return ctx, caller.user_id, comment, author, document, admin


async def edit_comment(request: web.Request) -> web.Response:
    path_uuid(request)
    await require_caller(request)
    payload = await read_json(request, CommentUpdate)
    ctx, user_id, comment, author, document, _admin = await _own_comment(request)
    if comment.author_id != user_id:
        raise Forbidden("only the author may edit a comment")
    async with ctx.db.write_session() as session:
        fresh = await session.get(Comment, comment.id)
        if fresh is None:
            raise NotFound("comment not found")
        await stored.edit_comment(session, fresh, payload.body)
        await record_comment(session, "edited", fresh, document)
    await push(ctx, fresh, author, "edited")
    return web.json_response(comment_json(fresh, author))


async def delete_comment(request: web.Request) -> web.Response:
    ctx, user_id, comment, author, document, admin = await _own_comment(request)
    if user_id not in (comment.author_id, document.user_id) and not admin:
        raise Forbidden("only the author, the document's owner or a moderator may delete a comment")
    async with ctx.db.write_session() as session:
        fresh = await session.get(Comment, comment.id)
        if fresh is None:
            raise NotFound("comment not found")
        await record_comment(session, "deleted", fresh, document, actor_id=user_id)
        await stored.delete_comment(session, fresh)
    await push(ctx, comment, author, "deleted")
    return json_model(Success())
