"""Request and response models of the version history routes (docs/history.md)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field

from rest.schemas import InputModel, OutputModel, QueryModel, Timestamp

ShareTokenField = Field(
    default=None, min_length=1, max_length=64, description="read through a share link you hold"
)
WHEN = "a version id, an ISO 8601 time, or `now`"


class HistoryQuery(QueryModel):
    share_token: str | None = ShareTokenField


class ActivityQuery(HistoryQuery):
    since: str | None = Field(
        default=None, max_length=64, description="ISO 8601 time: only sessions after it"
    )


class AtQuery(HistoryQuery):
    t: str = Field(min_length=1, max_length=64, description="ISO 8601 time")


class CompareQuery(HistoryQuery):
    from_: str = Field(alias="from", min_length=1, max_length=64, description=WHEN)
    to: str = Field(default="now", min_length=1, max_length=64, description=WHEN)


class VersionCreate(InputModel):
    name: str = Field(min_length=1, max_length=100, description="what to call this version")


class RevertRequest(InputModel):
    user_id: uuid.UUID = Field(description="whose changes to undo")
    since: str = Field(min_length=1, max_length=64, description="ISO 8601 time: undo their changes after it")


class HistorySettingsUpdate(InputModel):
    viewers_may_read: bool = Field(description="viewers and share links may list and read versions")


class HistorySettings(OutputModel):
    viewers_may_read: bool


class VersionSummary(OutputModel):
    id: uuid.UUID
    name: str | None = Field(description="None: an automatic version")
    automatic: bool
    created_at: Timestamp
    created_by: uuid.UUID | None
    authors: list[str] = Field(description="user ids of who edited since the previous version")
    summary: dict[str, int] = Field(description="what changed since the previous version, in music terms")


class VersionList(OutputModel):
    versions: list[VersionSummary]


class VersionDetail(VersionSummary):
    content: dict[str, Any] = Field(description="the content in the seed's JSON shape")


class ContentAt(OutputModel):
    at: Timestamp
    content: dict[str, Any]


class ActivityEntry(OutputModel):
    user_id: str | None
    started_at: Timestamp
    ended_at: Timestamp
    edits: int
    summary: dict[str, int]
    fields: list[str] = Field(description="the fields (name, bpm, color, length...) they changed")


class Activity(OutputModel):
    activity: list[ActivityEntry]


class ChangeItem(OutputModel):
    cell: str
    type: str = Field(description="field | chord | step | block")
    key: str
    change: str = Field(description="added | removed | changed")
    from_: Any = Field(alias="from")
    to: Any


class Comparison(OutputModel):
    summary: dict[str, int]
    changes: list[ChangeItem]


class Restored(OutputModel):
    content: dict[str, Any] = Field(description="the live content after the new edit")
