"""The routes of accounts: anonymous sign-up, refresh, logout, Firebase linking, the caller."""

from __future__ import annotations

from rest import auth
from rest.openapi import Route
from rest.schemas import AuthSession, LinkRequest, RefreshRequest, Success, UserPublic


def routes() -> list[Route]:
    return [
        Route(
            "POST",
            "/api/auth/anonymous",
            auth.create_anonymous,
            "Create an anonymous account and sign in",
            "auth",
            auth="none",
            response=AuthSession,
            status=201,
        ),
        Route(
            "POST",
            "/api/auth/refresh",
            auth.refresh,
            "Trade a refresh token for new tokens (rotates it)",
            "auth",
            auth="none",
            body=RefreshRequest,
            response=AuthSession,
            errors=(401,),
        ),
        Route(
            "POST",
            "/api/auth/logout",
            auth.sign_out,
            "Revoke a refresh token and its chain",
            "auth",
            auth="none",
            body=RefreshRequest,
            response=Success,
        ),
        Route(
            "POST",
            "/api/auth/link",
            auth.link,
            "Link the caller's anonymous account to a Firebase identity (merging if it exists)",
            "auth",
            body=LinkRequest,
            response=AuthSession,
            errors=(404, 409, 503),
        ),
        Route("GET", "/api/users/me", auth.me, "The caller's account", "users", response=UserPublic),
    ]
