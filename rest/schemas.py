"""pydantic models at the HTTP boundary: they validate requests and generate OpenAPI.

JSON field names are camelCase. Input models reject unknown fields; server-managed
fields that a client may echo back (``id``, ``createdAt``...) are accepted and ignored.
The composer's own spellings are accepted as aliases: ``bars`` for a loop's ``length``,
``bar`` for a step's ``step``, ``bars`` for a block's ``duration``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    computed_field,
    model_validator,
)
from pydantic.alias_generators import to_camel

MAX_NAME = 100
MAX_CHORD_CELLS = 64
MAX_ICON_STEPS = 2048
MAX_TIMELINE_BLOCKS = 512
DEFAULT_LOOP_COLOR = "#FFD11A"

Color = Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$", examples=["#FFD11A"])]
Name = Annotated[str, Field(min_length=1, max_length=MAX_NAME)]
Bpm = Annotated[int, Field(ge=40, le=300)]
SchemaVersion = Annotated[int, Field(ge=1, le=1000)]
ShortText = Annotated[str, Field(min_length=1, max_length=20)]

# Fields the server owns. A client that sends back what it fetched is not an error.
SERVER_MANAGED = frozenset(
    {"id", "userId", "createdAt", "updatedAt", "viewCount", "forkCount", "forkedFrom", "totalBars"}
)


class InputModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
    )


def _reject_both(data: Any, *names: str) -> Any:
    if isinstance(data, dict) and sum(name in data for name in names) > 1:
        raise ValueError(f"give only one of {' / '.join(repr(n) for n in names)}")
    return data


class ChordCell(InputModel):
    bar: int = Field(ge=0, le=1023)
    chord: ShortText
    roman: ShortText | None = None
    root: ShortText | None = None
    quality: ShortText | None = None


class IconStep(InputModel):
    step: int = Field(ge=0, le=63, validation_alias=AliasChoices("step", "bar"))
    sound_id: str = Field(min_length=1, max_length=64)
    velocity: float = Field(default=0.8, ge=0, le=1)
    note: str | None = Field(default=None, pattern=r"^[A-Ga-g][#b]?-?[0-9]$")
    pitch: int | None = Field(default=None, ge=0, le=127)
    row: int | None = Field(default=None, ge=0, le=3)
    duration16: int | None = Field(default=None, ge=1, le=64)

    @model_validator(mode="before")
    @classmethod
    def _one_position(cls, data: Any) -> Any:
        return _reject_both(data, "step", "bar")


class TimelineBlock(InputModel):
    id: str = Field(min_length=1, max_length=64)
    loop_id: str = Field(min_length=1, max_length=64)
    start_bar: int = Field(ge=0, le=100_000)
    duration: int = Field(ge=1, le=1024, validation_alias=AliasChoices("duration", "bars"))
    color: Color | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_duration(cls, data: Any) -> Any:
        return _reject_both(data, "duration", "bars")


def _unique_bars(cells: list[ChordCell]) -> list[ChordCell]:
    bars = [c.bar for c in cells]
    if len(bars) != len(set(bars)):
        raise ValueError("two chord cells share a bar; give one chord per bar")
    return cells


def _unique_block_ids(blocks: list[TimelineBlock]) -> list[TimelineBlock]:
    ids = [b.id for b in blocks]
    if len(ids) != len(set(ids)):
        raise ValueError("timeline block ids must be unique")
    return blocks


ChordProgression = Annotated[list[ChordCell], Field(max_length=MAX_CHORD_CELLS), AfterValidator(_unique_bars)]
IconSequence = Annotated[list[IconStep], Field(max_length=MAX_ICON_STEPS)]
Timeline = Annotated[
    list[TimelineBlock], Field(max_length=MAX_TIMELINE_BLOCKS), AfterValidator(_unique_block_ids)
]


class _DocumentInput(InputModel):
    @model_validator(mode="before")
    @classmethod
    def _drop_server_managed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in SERVER_MANAGED}
        return data


class LoopCreate(_DocumentInput):
    name: Name
    length: Literal[1, 2, 4, 8] = Field(validation_alias=AliasChoices("length", "bars"))
    bpm: Bpm | None = None
    color: Color = DEFAULT_LOOP_COLOR
    schema_version: SchemaVersion | None = None
    chord_progression: ChordProgression = Field(default_factory=list)
    icon_sequence: IconSequence = Field(default_factory=list)
    is_public: bool = False

    @model_validator(mode="before")
    @classmethod
    def _one_length(cls, data: Any) -> Any:
        return _reject_both(data, "length", "bars")


class LoopUpdate(_DocumentInput):
    """Partial update: only the fields present change. ``null`` clears ``bpm``."""

    name: Name = None  # type: ignore[assignment]  # absent = unchanged; null is refused
    length: Literal[1, 2, 4, 8] = Field(  # type: ignore[assignment]
        default=None, validation_alias=AliasChoices("length", "bars")
    )
    bpm: Bpm | None = None
    color: Color = None  # type: ignore[assignment]
    schema_version: SchemaVersion | None = None
    chord_progression: ChordProgression = None  # type: ignore[assignment]
    icon_sequence: IconSequence = None  # type: ignore[assignment]
    is_public: bool = None  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _one_length(cls, data: Any) -> Any:
        return _reject_both(data, "length", "bars")


class SongCreate(_DocumentInput):
    name: Name
    bpm: Bpm = 120
    time_signature: Literal["4/4", "3/4"] = "4/4"
    schema_version: SchemaVersion | None = None
    timeline: Timeline = Field(default_factory=list)
    is_public: bool = False


class SongUpdate(_DocumentInput):
    name: Name = None  # type: ignore[assignment]
    bpm: Bpm = None  # type: ignore[assignment]
    time_signature: Literal["4/4", "3/4"] = None  # type: ignore[assignment]
    schema_version: SchemaVersion | None = None
    timeline: Timeline = None  # type: ignore[assignment]
    is_public: bool = None  # type: ignore[assignment]


# --- query strings ----------------------------------------------------------------------


class QueryModel(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=False)


class ListQuery(QueryModel):
    page: int = Field(default=1, ge=1, le=100_000)
    limit: int = Field(default=20, ge=1, le=100)
    public: bool | None = Field(default=None, description="only public (true) or private (false)")
    include: Literal["content"] | None = Field(
        default=None, description="`content` adds the heavy JSON fields to each item"
    )


# --- responses --------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


Timestamp = Annotated[datetime, AfterValidator(_utc)]


class OutputModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        serialize_by_alias=True,
        validate_by_name=True,
        from_attributes=True,
    )


class Moderated(OutputModel):
    """``hidden`` and its reason: only the owner and admins ever see a hidden item."""

    hidden_at: Timestamp | None = Field(default=None, exclude=True)
    hidden_reason: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def hidden(self) -> bool:
        return self.hidden_at is not None


class LoopSummary(Moderated):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    length: int
    bpm: int | None
    color: str
    schema_version: int | None
    is_public: bool
    view_count: int
    fork_count: int
    forked_from: uuid.UUID | None
    created_at: Timestamp
    updated_at: Timestamp


class LoopPublic(LoopSummary):
    chord_progression: list[dict[str, Any]]
    icon_sequence: list[dict[str, Any]]


class SongSummary(Moderated):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    bpm: int
    time_signature: str
    schema_version: int | None
    total_bars: int
    is_public: bool
    view_count: int
    created_at: Timestamp
    updated_at: Timestamp


class SongPublic(SongSummary):
    timeline: list[dict[str, Any]]


class LoopList(OutputModel):
    loops: list[LoopPublic | LoopSummary]
    total: int
    page: int
    has_more: bool


class SongList(OutputModel):
    songs: list[SongPublic | SongSummary]
    total: int
    page: int
    has_more: bool


class UserPublic(OutputModel):
    id: uuid.UUID
    username: str | None
    email: str | None
    display_name: str | None
    avatar_url: str | None
    bio: str | None
    is_anonymous: bool
    created_at: Timestamp
    is_admin: bool = False


class AuthSession(OutputModel):
    token: str
    refresh_token: str
    expires_in: int
    user: UserPublic


class RefreshRequest(InputModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class LinkRequest(InputModel):
    id_token: str = Field(min_length=1, max_length=8192, description="a Firebase ID token")


class Success(OutputModel):
    success: Literal[True] = True


class ErrorBody(OutputModel):
    error: str = Field(description="a human-readable message")
    code: str = Field(description="a machine-readable code")
    details: list[Any] = Field(default_factory=list)


class PresenceMember(OutputModel):
    user_id: uuid.UUID | None
    display_name: str
    role: Literal["owner", "editor", "viewer"]
    connections: int


class Presence(OutputModel):
    """Who is connected to a document right now (from their tokens, not their claims)."""

    members: list[PresenceMember]


class Health(OutputModel):
    status: str
