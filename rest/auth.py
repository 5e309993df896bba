"""Identity endpoints: anonymous accounts, token refresh, Firebase linking, the caller."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from events import outbox
from identity.tokens import hash_refresh_token, new_refresh_token
from rest.context import RestContext, context, json_model, read_json, require_caller
from rest.profiles import user_public
from rest.schemas import AuthSession, LinkRequest, RefreshRequest, Success, UserPublic
from storage.errors import NotFound, Unauthorized
from storage.models import User
from storage.moderation import is_admin
from storage.users import (
    RefreshTokenReused,
    consume_refresh_token,
    create_anonymous_user,
    get_user,
    link_firebase_identity,
    revoke_refresh_family,
    revoke_refresh_token,
    store_refresh_token,
    touch_last_seen,
)


async def _new_session(
    ctx: RestContext, session: AsyncSession, user: User, *, family_id: object = None
) -> AuthSession:
    refresh = new_refresh_token()
    await store_refresh_token(
        session,
        user_id=user.id,
        token_hash=hash_refresh_token(refresh),
        ttl_seconds=ctx.settings.refresh_token_ttl,
        family_id=family_id,  # type: ignore[arg-type]
    )
    return AuthSession(
        token=ctx.auth.tokens.issue_access(user.id, is_anonymous=user.is_anonymous),
        refresh_token=refresh,
        expires_in=ctx.auth.tokens.access_ttl,
        user=UserPublic.model_validate(user),
    )


async def create_anonymous(request: web.Request) -> web.Response:
    ctx = context(request)
    async with ctx.db.write_session() as session:
        user = await create_anonymous_user(session)
        result = await _new_session(ctx, session, user)
    return json_model(result, status=201)


async def refresh(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_json(request, RefreshRequest)
    try:
        async with ctx.db.write_session() as session:
            used = await consume_refresh_token(session, hash_refresh_token(body.refresh_token))
            user = await get_user(session, used.user_id)
            if user is None:
                raise Unauthorized("this account no longer exists")
            await touch_last_seen(session, user.id)
            result = await _new_session(ctx, session, user, family_id=used.family_id)
    except RefreshTokenReused as exc:
        # A replayed token means it may be stolen: end every session of that chain.
        async with ctx.db.write_session() as session:
            await revoke_refresh_family(session, exc.family_id)
        raise
    return json_model(result)


async def sign_out(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_json(request, RefreshRequest)
    async with ctx.db.write_session() as session:
        await revoke_refresh_token(session, hash_refresh_token(body.refresh_token))
    return json_model(Success())


async def link(request: web.Request) -> web.Response:
    """Attach a Firebase identity to the caller's account, keeping (or merging) its data."""
    ctx = context(request)
    caller = await require_caller(request)
    body = await read_json(request, LinkRequest)
    if ctx.auth.firebase is None:
        raise NotFound("Firebase sign-in is not enabled on this server")
    identity = await ctx.auth.firebase.verify(body.id_token)
    async with ctx.db.write_session() as session:
        user = await get_user(session, caller.user_id)
        if user is None:
            raise Unauthorized("this account no longer exists")
        account = await link_firebase_identity(
            session,
            user=user,
            uid=identity.uid,
            email=identity.email,
            display_name=identity.display_name,
            avatar_url=identity.avatar_url,
        )
        result = await _new_session(ctx, session, account)
        await outbox.record(session, "account.linked", {"userId": str(account.id)}, actor_id=account.id)
    ctx.auth.remember(identity.uid, account.id)
    if account.id != caller.user_id:  # the anonymous account was merged in and deleted
        ctx.documents.user_changed(caller.user_id)
    return json_model(result)


async def me(request: web.Request) -> web.Response:
    ctx = context(request)
    caller = await require_caller(request)
    async with ctx.db.session() as session:
        user = await get_user(session, caller.user_id)
        admin = await is_admin(session, caller.user_id, ctx.settings.admin_user_ids)
    if user is None:
        raise Unauthorized("this account no longer exists")
    return json_model(user_public(user, is_admin=admin))
