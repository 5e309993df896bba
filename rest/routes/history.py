"""The routes of the version history (docs/history.md), the same for loops and songs."""

from __future__ import annotations

from rest.history import HistoryHandlers
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
from rest.library import LOOPS, SONGS, DocumentKind
from rest.openapi import Route
from rest.schemas import Success

# Who may read a history, said once for every reading route's summary.
READERS = "owner and editors; viewers and share links if the owner allows it"


def routes() -> list[Route]:
    return [*_per_kind(LOOPS), *_per_kind(SONGS)]


def _per_kind(kind: DocumentKind) -> list[Route]:
    h = HistoryHandlers(kind)
    item, version, tag = (
        f"/api/{kind.plural}/{{id}}",
        f"/api/{kind.plural}/{{id}}/versions/{{versionId}}",
        "history",
    )
    name = kind.name
    return [
        Route(
            "GET",
            f"{item}/activity",
            h.activity,
            f"Who edited the {name} and when, with what they changed ({READERS})",
            tag,
            auth="optional",
            query=ActivityQuery,
            response=Activity,
            errors=(403, 404, 410),
        ),
        Route(
            "GET",
            f"{item}/versions",
            h.list_versions,
            f"The versions of the {name}, newest first ({READERS})",
            tag,
            auth="optional",
            query=HistoryQuery,
            response=VersionList,
            errors=(403, 404),
        ),
        Route(
            "POST",
            f"{item}/versions",
            h.create_version,
            f"Name the {name}'s current content as a version (owner and editors)",
            tag,
            body=VersionCreate,
            response=VersionSummary,
            status=201,
            errors=(403, 404),
        ),
        # Before {versionId}: aiohttp matches routes in the order they are added.
        Route(
            "GET",
            f"{item}/versions/at",
            h.at,
            f"The {name}'s content as it was at a time ({READERS})",
            tag,
            auth="optional",
            query=AtQuery,
            response=ContentAt,
            errors=(403, 404, 410),
        ),
        Route(
            "GET",
            version,
            h.read_version,
            f"One version of the {name}, with its content ({READERS})",
            tag,
            auth="optional",
            query=HistoryQuery,
            response=VersionDetail,
            errors=(403, 404),
        ),
        Route(
            "DELETE",
            version,
            h.delete_version,
            f"Delete a version of the {name} (owner and editors)",
            tag,
            response=Success,
            errors=(403, 404),
        ),
        Route(
            "POST",
            f"{version}/restore",
            h.restore,
            f"Restore a version of the {name}, as a new edit on top (owner and editors)",
            tag,
            response=Restored,
            errors=(403, 404, 503),
        ),
        Route(
            "POST",
            f"{version}/fork",
            h.fork_version,
            f"Fork a version of the {name} into your library ({READERS})",
            tag,
            query=HistoryQuery,
            response=kind.public,
            status=201,
            errors=(403, 404),
        ),
        Route(
            "GET",
            f"{item}/compare",
            h.compare,
            f"What changed between two versions or times of the {name}, in music terms ({READERS})",
            tag,
            auth="optional",
            query=CompareQuery,
            response=Comparison,
            errors=(403, 404, 410),
        ),
        Route(
            "POST",
            f"{item}/revert",
            h.revert,
            f"Undo one person's changes to the {name} since a time, as a new edit (owner and editors)",
            tag,
            body=RevertRequest,
            response=Restored,
            errors=(403, 404, 410, 503),
        ),
        Route(
            "GET",
            f"{item}/history/settings",
            h.settings,
            f"Who may read the {name}'s history (anyone who can read the {name})",
            tag,
            auth="optional",
            query=HistoryQuery,
            response=HistorySettings,
            errors=(404,),
        ),
        Route(
            "PATCH",
            f"{item}/history/settings",
            h.update_settings,
            f"Allow or forbid viewers to read the {name}'s history (owner only)",
            tag,
            body=HistorySettingsUpdate,
            response=HistorySettings,
            errors=(403, 404),
        ),
    ]
