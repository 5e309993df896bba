"""The routes of the community: profiles, explore, comments, moderation, the composer import."""

from __future__ import annotations

from rest import composer_import, explore, moderation, profiles
from rest.comments import CommentHandlers, delete_comment, edit_comment
from rest.community_schemas import (
    CommentCreate,
    CommentList,
    CommentPublic,
    CommentsQuery,
    CommentUpdate,
    ExploreQuery,
    ExploreResponse,
    HideRequest,
    MigrateRequest,
    MigrateResponse,
    ModerationState,
    ProfileQuery,
    ProfileUpdate,
    PublicProfile,
    ReportCreate,
    ReportList,
    ReportPublic,
    ReportsQuery,
    ResolveReport,
)
from rest.library import LOOPS, SONGS
from rest.openapi import Route
from rest.schemas import Success, UserPublic


def _comment_routes(handlers: CommentHandlers) -> list[Route]:
    kind = handlers.kind
    path = f"/api/{kind.plural}/{{id}}/comments"
    return [
        Route(
            "GET",
            path,
            handlers.list,
            f"Comments on a {kind.name}, oldest first (paginated)",
            "comments",
            auth="optional",
            query=CommentsQuery,
            response=CommentList,
            errors=(400, 401, 404),
        ),
        Route(
            "POST",
            path,
            handlers.create,
            f"Comment on a {kind.name} you can read (pushed live as the `comment` event)",
            "comments",
            query=CommentsQuery,
            body=CommentCreate,
            response=CommentPublic,
            status=201,
            errors=(404,),
        ),
    ]


def _admin_visibility_routes() -> list[Route]:
    routes = []
    for segment, resource_type in moderation.ADMIN_RESOURCES.items():
        for hide in (True, False):
            action = "hide" if hide else "unhide"
            routes.append(
                Route(
                    "POST",
                    f"/api/admin/{segment}/{{id}}/{action}",
                    moderation.visibility_handler(segment, hide=hide),
                    f"{action.capitalize()} a {resource_type} (moderators)",
                    "moderation",
                    body=HideRequest if hide else None,
                    response=ModerationState,
                    errors=(400, 403, 404),
                )
            )
    return routes


def routes() -> list[Route]:
    return [
        Route(
            "PATCH",
            "/api/users/me",
            profiles.update_me,
            "Update your profile (partial)",
            "users",
            body=ProfileUpdate,
            response=UserPublic,
            errors=(409,),
        ),
        Route(
            "GET",
            "/api/users/{username}",
            profiles.get_profile,
            "A public profile with the user's public loops and songs (paginated)",
            "users",
            auth="optional",
            query=ProfileQuery,
            response=PublicProfile,
            errors=(400, 404),
        ),
        Route(
            "GET",
            "/api/explore",
            explore.explore_public,
            "Public loops or songs: search by name, sort, keyset pages",
            "explore",
            auth="none",
            query=ExploreQuery,
            response=ExploreResponse,
            errors=(400,),
        ),
        *_comment_routes(CommentHandlers(LOOPS)),
        *_comment_routes(CommentHandlers(SONGS)),
        Route(
            "PATCH",
            "/api/comments/{id}",
            edit_comment,
            "Edit your comment",
            "comments",
            body=CommentUpdate,
            response=CommentPublic,
            errors=(403, 404),
        ),
        Route(
            "DELETE",
            "/api/comments/{id}",
            delete_comment,
            "Delete a comment (its author, the document's owner, or a moderator)",
            "comments",
            response=Success,
            errors=(400, 403, 404),
        ),
        Route(
            "POST",
            "/api/reports",
            moderation.create_report,
            "Report a loop, song, user or comment (once per resource)",
            "moderation",
            body=ReportCreate,
            response=ReportPublic,
            status=201,
            errors=(404, 409),
        ),
        Route(
            "GET",
            "/api/admin/reports",
            moderation.list_reports,
            "Reports, oldest first (moderators)",
            "moderation",
            query=ReportsQuery,
            response=ReportList,
            errors=(400, 403),
        ),
        Route(
            "POST",
            "/api/admin/reports/{id}/resolve",
            moderation.resolve_report,
            "Resolve a report and the other open reports of its resource: hide or dismiss (moderators)",
            "moderation",
            body=ResolveReport,
            response=ReportPublic,
            errors=(403, 404),
        ),
        *_admin_visibility_routes(),
        Route(
            "POST",
            "/api/migrate",
            composer_import.migrate,
            "Import the composer's localStorage loops and songs (idempotent per local id)",
            "migration",
            body=MigrateRequest,
            response=MigrateResponse,
            errors=(403, 429),
        ),
    ]
