"""Every event kind the server tells about, defined once: its name, what it means, who gets an
in-app notification about it, and an example of its ``data`` (docs/events.md is made from it
and a test keeps the two the same)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class Audience(enum.Enum):
    """Who gets an in-app notification of an event (webhooks get every kind they subscribe to)."""

    NOBODY = "nobody"
    OWNER = "the document's owner"
    SUBJECT = "the user the event is about (`data.userId`)"
    THREAD = "the document's owner and the thread's participants"
    MODERATORS = "moderators"
    REPORTER = "the reporter"
    COLLABORATORS = "the document's owner and collaborators"


@dataclass(frozen=True)
class EventKind:
    name: str
    summary: str
    audience: Audience
    example: dict[str, Any]
    group: bool = False  # several unread events of this kind on one document are one notification


_LOOP = {"id": "5f0c6f43-2f39-4a4e-a7b0-0d2bbd0d4a61", "name": "Sunday groove"}
_COMMENT = {"id": "0b8f2d5e-8f7e-4a3b-9c51-1f1c0e7a3b22", "authorId": "8c1d9a57-3c1a-4f7c-9a51-64a1a6b3d9e2"}
_FORK = "0e2f7c1a-6b0d-4d3e-8f21-5a9c3b7d1e44"
_USER = "8c1d9a57-3c1a-4f7c-9a51-64a1a6b3d9e2"


def _doc(kind: str) -> list[EventKind]:
    doc = {"kind": kind, **_LOOP}
    return [
        EventKind(f"{kind}.created", f"a {kind} was created", Audience.NOBODY, {f"{kind}": doc}),
        EventKind(
            f"{kind}.content_changed",
            f"a {kind}'s content was edited (at most one event per document per "
            "`CONTENT_EVENT_DEBOUNCE_SECONDS`, with everyone who edited in that window)",
            Audience.NOBODY,
            {f"{kind}": doc, "editorIds": [_USER]},
        ),
        EventKind(
            f"{kind}.visibility_changed",
            f"a {kind} was made public or private",
            Audience.COLLABORATORS,
            {f"{kind}": doc, "isPublic": True},
        ),
        EventKind(f"{kind}.deleted", f"a {kind} was deleted", Audience.NOBODY, {f"{kind}": doc}),
        EventKind(
            f"{kind}.forked",
            f"a {kind} was forked (`{kind}` is the parent, `fork` the new private copy)",
            Audience.OWNER,
            {f"{kind}": doc, "fork": {"kind": kind, "id": _FORK, "name": _LOOP["name"]}},
            group=True,
        ),
        EventKind(
            f"{kind}.shared",
            f"a share link of a {kind} was created",
            Audience.NOBODY,
            {f"{kind}": doc, "role": "viewer"},
        ),
        EventKind(
            f"{kind}.collaborator_added",
            f"someone was made a collaborator on a {kind}",
            Audience.SUBJECT,
            {f"{kind}": doc, "userId": _USER, "role": "editor"},
        ),
        EventKind(
            f"{kind}.collaborator_removed",
            f"a collaborator was removed from a {kind}",
            Audience.SUBJECT,
            {f"{kind}": doc, "userId": _USER},
        ),
        EventKind(
            f"{kind}.collaborator_role_changed",
            f"a collaborator's role on a {kind} changed",
            Audience.SUBJECT,
            {f"{kind}": doc, "userId": _USER, "role": "viewer"},
        ),
        EventKind(
            f"{kind}.comment_created",
            f"a comment on a {kind}",
            Audience.THREAD,
            {
                f"{kind}": doc,
                "comment": {**_COMMENT, "body": "Love the bass"},
            },
            group=True,
        ),
        EventKind(
            f"{kind}.comment_edited",
            f"a comment on a {kind} was edited",
            Audience.THREAD,
            {
                f"{kind}": doc,
                "comment": {**_COMMENT, "body": "Love the bassline"},
            },
        ),
        EventKind(
            f"{kind}.comment_deleted",
            f"a comment on a {kind} was deleted",
            Audience.THREAD,
            {f"{kind}": doc, "comment": _COMMENT},
        ),
    ]


KINDS: tuple[EventKind, ...] = (
    *_doc("loop"),
    *_doc("song"),
    EventKind(
        "report.created",
        "a user reported a loop, song, user or comment",
        Audience.MODERATORS,
        {
            "report": {
                "id": "a1b2c3d4-0000-4000-8000-000000000001",
                "resourceType": "loop",
                "resourceId": _LOOP["id"],
            }
        },
    ),
    EventKind(
        "report.resolved",
        "a moderator handled a report (`resolution`: hide or dismiss)",
        Audience.REPORTER,
        {
            "report": {
                "id": "a1b2c3d4-0000-4000-8000-000000000001",
                "resourceType": "loop",
                "resourceId": _LOOP["id"],
            },
            "resolution": "hide",
            "userId": _USER,
        },
    ),
    EventKind(
        "sample.uploaded",
        "a user uploaded a sample",
        Audience.NOBODY,
        {"sample": {"id": "c0ffee00-0000-4000-8000-000000000002", "name": "kick.wav", "bytes": 48211}},
    ),
    EventKind(
        "account.linked",
        "an anonymous account was linked to a sign-in identity",
        Audience.NOBODY,
        {"userId": _USER},
    ),
)
BY_NAME: dict[str, EventKind] = {kind.name: kind for kind in KINDS}
# An event kind name: the longest in the catalogue fits the outbox's column.
MAX_KIND_LENGTH = 40
assert max(len(k.name) for k in KINDS) <= MAX_KIND_LENGTH


def kind(name: str) -> EventKind:
    """The catalogue entry of ``name`` (KeyError for a kind nobody defined: a programming error)."""
    return BY_NAME[name]
