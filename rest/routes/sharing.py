"""The routes of sharing: share links, public pages, forks, collaborators."""

from __future__ import annotations

from rest import page_files, pages
from rest.collaborators import CollaboratorHandlers
from rest.library import LOOPS, SONGS, DocumentKind
from rest.openapi import Route
from rest.schemas import (
    CollaboratorAdd,
    CollaboratorList,
    CollaboratorPublic,
    CollaboratorUpdate,
    ForkRequest,
    ShareCreate,
    SharedDocument,
    ShareList,
    SharePublic,
    SongQuery,
    Success,
)
from rest.sharing import ForkHandlers, ShareHandlers, get_shared, revoke_share


def _per_kind(kind: DocumentKind) -> list[Route]:
    shares, people = ShareHandlers(kind), CollaboratorHandlers(kind)
    item, tag = f"/api/{kind.plural}/{{id}}", "sharing"
    return [
        Route(
            "POST",
            f"{item}/fork",
            ForkHandlers(kind).fork,
            f"Fork a {kind.name} you can read (public, collaborator or share token) into your library",
            kind.plural,
            body=ForkRequest,
            response=kind.public,
            status=201,
            errors=(403, 404),
        ),
        Route(
            "POST",
            f"{item}/share",
            shares.create,
            f"Create a share link to your {kind.name} (owner only)",
            tag,
            body=ShareCreate,
            response=SharePublic,
            status=201,
            errors=(403, 404),
        ),
        Route(
            "GET",
            f"{item}/shares",
            shares.list,
            f"The share links of your {kind.name} (owner only)",
            tag,
            response=ShareList,
            errors=(400, 403, 404),
        ),
        Route(
            "GET",
            f"{item}/collaborators",
            people.list,
            f"Who collaborates on the {kind.name} (owner and collaborators)",
            "collaborators",
            response=CollaboratorList,
            errors=(400, 403, 404),
        ),
        Route(
            "POST",
            f"{item}/collaborators",
            people.add,
            f"Add a collaborator to your {kind.name} by username (owner only)",
            "collaborators",
            body=CollaboratorAdd,
            response=CollaboratorPublic,
            status=201,
            errors=(403, 404, 409),
        ),
        Route(
            "PATCH",
            f"{item}/collaborators/{{username}}",
            people.update,
            "Change a collaborator's role (owner only)",
            "collaborators",
            body=CollaboratorUpdate,
            response=CollaboratorPublic,
            errors=(403, 404),
        ),
        Route(
            "DELETE",
            f"{item}/collaborators/{{username}}",
            people.remove,
            "Remove a collaborator (owner only); their open sockets lose access at once",
            "collaborators",
            response=Success,
            errors=(400, 403, 404),
        ),
    ]


def _pages() -> list[Route]:
    """HTML for people (OpenAPI lists them; they answer text/html, 404/410 as pages too)."""
    return [
        Route(
            "GET",
            "/loop/{token}",
            pages.loop_page,
            "The public page of a shared loop",
            "pages",
            auth="none",
            html=True,
            errors=(404, 410),
        ),
        Route(
            "GET",
            "/song/{token}",
            pages.song_page,
            "The public page of a shared song",
            "pages",
            auth="none",
            html=True,
            errors=(404, 410),
        ),
        Route(
            "GET",
            "/embed/{token}",
            pages.embed_page,
            "The compact, framable player card of a shared loop or song",
            "pages",
            auth="none",
            html=True,
            errors=(404, 410),
        ),
        Route(
            "GET",
            "/preview/{token}.png",
            page_files.preview_image,
            "The link-preview picture (og:image) of a shared loop or song: PNG, 1200 x 630, with an ETag",
            "pages",
            auth="none",
            errors=(404, 410),
        ),
        Route(
            "GET",
            "/static/{group}/{digest}/{file}",
            page_files.static_file,
            "A script of the public pages (the player, Tone.js, tonal, the kit), immutable under its digest",
            "pages",
            auth="none",
            errors=(404,),
        ),
    ]


def routes() -> list[Route]:
    return [
        *_pages(),
        *_per_kind(LOOPS),
        *_per_kind(SONGS),
        Route(
            "DELETE",
            "/api/shares/{token}",
            revoke_share,
            "Revoke a share link (owner of the shared document only)",
            "sharing",
            response=Success,
            errors=(403, 404, 410),
        ),
        Route(
            "GET",
            "/api/shared/{token}",
            get_shared,
            "Read a shared loop or song with its live content (no sign-in needed); a song with "
            "?include=loops adds its public loops",
            "sharing",
            auth="optional",
            query=SongQuery,
            response=SharedDocument,
            errors=(404, 410),
        ),
    ]
