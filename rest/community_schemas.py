"""pydantic models of the community endpoints: profiles, explore, comments, moderation,
migration from localStorage. Same conventions as rest/schemas.py."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from music.bounds import MAX_NAME_LEN
from rest.schemas import (
    InputModel,
    LoopContentOmitted,
    LoopPublic,
    LoopSummary,
    Moderated,
    OutputModel,
    QueryModel,
    SongContentOmitted,
    SongPublic,
    SongSummary,
    Timestamp,
    absent_means_unchanged,
    username_syntax,
)

# Names that read as the product or its staff, or collide with routes.
RESERVED_USERNAMES = frozenset({"admin", "administrator", "api", "moderator", "root", "support", "system"})
MAX_COMMENT = 2000
MAX_REASON = 1000
MAX_HIDE_REASON = 200
# Fields of the User that only the server sets; a profile update naming one is refused.
SERVER_OWNED_USER_FIELDS = frozenset(
    {"id", "isAnonymous", "email", "firebaseUid", "isAdmin", "createdAt", "hidden", "hiddenReason"}
)


def _username(value: str) -> str:
    value = username_syntax(value)
    if value in RESERVED_USERNAMES:
        raise ValueError(f"the username {value!r} is reserved")
    return value


def _web_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in value):
        raise ValueError("must be an http:// or https:// URL")
    return value


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Username = Annotated[str, Field(min_length=3, max_length=30), AfterValidator(_username)]
AvatarUrl = Annotated[str, Field(max_length=2048), AfterValidator(_web_url)]
Page = Annotated[int, Field(ge=1, le=100_000)]
Limit = Annotated[int, Field(ge=1, le=100)]


# --- profiles ---------------------------------------------------------------------------


class ProfileUpdate(InputModel):
    """Partial: only the fields sent change; ``null`` clears ``displayName``, ``avatarUrl``, ``bio``."""

    model_config = ConfigDict(json_schema_extra=absent_means_unchanged)

    username: Username = None  # type: ignore[assignment]  # absent = unchanged; null is refused
    display_name: Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_text)] | None = None
    avatar_url: AvatarUrl | None = None
    bio: Annotated[str, Field(max_length=500)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _server_owned(cls, data: Any) -> Any:
        if isinstance(data, dict):
            owned = sorted(SERVER_OWNED_USER_FIELDS.intersection(data))
            if owned:
                raise ValueError(f"{', '.join(owned)}: managed by the server, cannot be changed here")
        return data


class Owner(OutputModel):
    """Who made a public item, as shown to everyone (never e-mail or sign-in ids)."""

    id: uuid.UUID
    username: str | None
    display_name: str | None
    avatar_url: str | None


class ExploreLoop(LoopSummary):
    owner: Owner


class ExploreLoopContent(LoopPublic):
    owner: Owner


class ExploreSong(SongSummary):
    owner: Owner


class ExploreSongContent(SongPublic):
    owner: Owner


class ExploreLoopContentOmitted(LoopContentOmitted):
    owner: Owner


class ExploreSongContentOmitted(SongContentOmitted):
    owner: Owner


class ProfileQuery(QueryModel):
    page: Page = 1
    limit: Limit = 20


class PublicProfile(Moderated):
    username: str
    display_name: str | None
    avatar_url: str | None
    bio: str | None
    created_at: Timestamp
    public_loops: list[ExploreLoop]
    public_songs: list[ExploreSong]
    total_loops: int
    total_songs: int
    page: int
    has_more: bool


# --- explore ----------------------------------------------------------------------------


class ExploreQuery(QueryModel):
    type: Literal["loop", "song"] = "loop"
    q: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_LEN, description="name contains")
    sort: Literal["recent", "views", "forks"] = "recent"
    page: Page = 1
    limit: Limit = 20
    cursor: str | None = Field(
        default=None, min_length=1, max_length=200, description="`nextCursor` of the previous page"
    )
    include: Literal["content"] | None = None


class ExploreResponse(OutputModel):
    items: list[
        ExploreLoopContent
        | ExploreLoopContentOmitted
        | ExploreLoop
        | ExploreSongContent
        | ExploreSongContentOmitted
        | ExploreSong
    ]
    total: int
    page: int
    has_more: bool
    next_cursor: str | None = Field(description="pass as `cursor` for the next page (stable keyset)")


# --- comments ---------------------------------------------------------------------------


class CommentAnchor(InputModel):
    bar: int = Field(ge=0, le=1023)
    step: int | None = Field(default=None, ge=0, le=63)


CommentBody = Annotated[str, Field(min_length=1, max_length=MAX_COMMENT), AfterValidator(_text)]


class CommentCreate(InputModel):
    body: CommentBody
    anchor: CommentAnchor | None = None


class CommentUpdate(InputModel):
    body: CommentBody


class CommentsQuery(QueryModel):
    page: Page = 1
    limit: Limit = 20
    share_token: str | None = Field(default=None, min_length=1, max_length=128)


class CommentPublic(Moderated):
    id: uuid.UUID
    resource_type: Literal["loop", "song"]
    resource_id: uuid.UUID
    author: Owner
    body: str
    anchor: dict[str, int] | None
    created_at: Timestamp
    edited_at: Timestamp | None


class CommentList(OutputModel):
    comments: list[CommentPublic]
    total: int
    page: int
    has_more: bool


# --- moderation -------------------------------------------------------------------------

ResourceType = Literal["loop", "song", "user", "comment"]
HideReason = Annotated[str, Field(min_length=1, max_length=MAX_HIDE_REASON), AfterValidator(_text)]


class ReportCreate(InputModel):
    resource_type: ResourceType
    resource_id: uuid.UUID
    reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON), AfterValidator(_text)]


class ReportPublic(OutputModel):
    id: uuid.UUID
    reporter_id: uuid.UUID
    resource_type: ResourceType
    resource_id: uuid.UUID
    reason: str
    status: Literal["open", "resolved"]
    resolution: Literal["hide", "dismiss"] | None
    created_at: Timestamp
    resolved_at: Timestamp | None


class ReportsQuery(QueryModel):
    status: Literal["open", "resolved"] | None = "open"
    page: Page = 1
    limit: Limit = 20


class ReportList(OutputModel):
    reports: list[ReportPublic]
    total: int
    page: int
    has_more: bool


class ResolveReport(InputModel):
    action: Literal["hide", "dismiss"]
    reason: HideReason | None = Field(default=None, description="shown to the owner; `dmca` for takedowns")


class HideRequest(InputModel):
    reason: HideReason = Field(description="shown to the owner; `dmca` for a DMCA takedown")


class ModerationState(OutputModel):
    resource_type: ResourceType
    resource_id: uuid.UUID
    hidden: bool
    hidden_reason: str | None


# --- migration from localStorage ----------------------------------------------------------

MAX_MIGRATE_LOOPS = 2000
MAX_MIGRATE_SONGS = 500

LocalItems = (
    Annotated[list[Any], Field(max_length=MAX_MIGRATE_LOOPS)]
    | Annotated[dict[str, Any], Field(max_length=MAX_MIGRATE_LOOPS)]
)


class MigrateRequest(InputModel):
    """The composer's localStorage: arrays of items, or objects keyed by local id."""

    loops: LocalItems = Field(default_factory=list)
    songs: LocalItems = Field(default_factory=list)

    @model_validator(mode="after")
    def _bounded_songs(self) -> MigrateRequest:
        if len(self.songs) > MAX_MIGRATE_SONGS:
            raise ValueError(f"at most {MAX_MIGRATE_SONGS} songs per migration")
        return self


class MigrateCounts(OutputModel):
    created: int
    failed: int
    already_migrated: int = Field(description="sent before: answered from the stored mapping")


class IdMapping(OutputModel):
    loops: dict[str, uuid.UUID]
    songs: dict[str, uuid.UUID]


class MigrateIssue(OutputModel):
    local_id: str | None
    kind: Literal["loop", "song"]
    error: str
    details: list[Any]


class MigrateResponse(OutputModel):
    loops: MigrateCounts
    songs: MigrateCounts
    id_mapping: IdMapping
    errors: list[MigrateIssue] = Field(description="items that were not migrated")
    warnings: list[MigrateIssue] = Field(
        description="migrated items with something left out (timeline blocks of unknown loops)"
    )
