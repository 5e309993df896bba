"""Profiles: ``PATCH /api/users/me`` and the public ``GET /api/users/{username}``."""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel

from rest.community_schemas import (
    ExploreLoop,
    ExploreLoopContent,
    ExploreSong,
    ExploreSongContent,
    Owner,
    ProfileQuery,
    ProfileUpdate,
    PublicProfile,
)
from rest.context import context, json_model, optional_caller, read_json, read_query, require_caller
from rest.schemas import UserPublic, username_syntax
from storage import explore, moderation, profiles
from storage.errors import NotFound, Unauthorized
from storage.models import Loop, Song, User
from storage.users import get_user


def user_public(user: User, *, is_admin: bool) -> UserPublic:
    """The caller's own account (``isAdmin`` is the effective right, ADMIN_USER_IDS included)."""
    return UserPublic.model_validate(user).model_copy(update={"is_admin": is_admin})


def public_item(row: Loop | Song, owner: User, *, with_content: bool = False) -> BaseModel:
    """An explore / profile item: the summary (or the whole document) and its owner."""
    if isinstance(row, Loop):
        model: type[BaseModel] = ExploreLoopContent if with_content else ExploreLoop
    else:
        model = ExploreSongContent if with_content else ExploreSong
    fields = {name: getattr(row, name) for name in model.model_fields if name != "owner"}
    return model.model_validate({**fields, "owner": Owner.model_validate(owner)})


async def update_me(request: web.Request) -> web.Response:
    ctx = context(request)
    caller = await require_caller(request)
    payload = await read_json(request, ProfileUpdate)
    values = {field: getattr(payload, field) for field in payload.model_fields_set}
    async with ctx.db.write_session() as session:
        user = await get_user(session, caller.user_id)
        if user is None:
            raise Unauthorized("this account no longer exists")
        await profiles.update_profile(session, user, values)
        admin = await moderation.is_admin(session, user.id, ctx.settings.admin_user_ids)
    ctx.documents.user_changed(user.id)  # live rooms show the new name
    return json_model(user_public(user, is_admin=admin))


def _is_username(value: str) -> bool:
    try:
        username_syntax(value)
    except ValueError:
        return False
    return True


async def get_profile(request: web.Request) -> web.Response:
    ctx = context(request)
    username = request.match_info["username"]
    query = read_query(request, ProfileQuery)
    caller = await optional_caller(request)
    offset = (query.page - 1) * query.limit
    async with ctx.db.session() as session:
        # A name that cannot be a username names nobody (no query; no look-alike either).
        user = await profiles.user_by_username(session, username) if _is_username(username) else None
        if user is not None and user.hidden_at is not None and (caller is None or caller.user_id != user.id):
            if not await moderation.is_admin(
                session, caller.user_id if caller else None, ctx.settings.admin_user_ids
            ):
                user = None
        if user is None or user.username is None:
            raise NotFound("no such user")
        pages = {
            model: await explore.public_documents(
                session, model, owner_id=user.id, offset=offset, limit=query.limit
            )
            for model in (Loop, Song)
        }
    loops, songs = pages[Loop], pages[Song]
    profile = PublicProfile.model_validate(
        {
            "username": user.username,
            "display_name": user.display_name,
            "avatar_url": user.avatar_url,
            "bio": user.bio,
            "created_at": user.created_at,
            "hidden_at": user.hidden_at,
            "hidden_reason": user.hidden_reason,
            "public_loops": [public_item(r, o) for r, o in loops.rows],
            "public_songs": [public_item(r, o) for r, o in songs.rows],
            "total_loops": loops.total,
            "total_songs": songs.total,
            "page": query.page,
            "has_more": loops.has_more or songs.has_more,
        }
    )
    return json_model(profile)
