"""pydantic models at the HTTP boundary: they validate requests and generate OpenAPI.

JSON field names are camelCase. Input models reject unknown fields; server-managed
fields that a client may echo back (``id``, ``createdAt``...) are accepted and ignored.
The composer's own spellings are accepted as aliases: ``bars`` for a loop's ``length``,
``bar`` for a step's ``step``, ``bars`` for a block's ``duration``.
"""

from __future__ import annotations

import re
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

from music import bounds  # every content bound is defined once, there
from music.bounds import DEFAULT_LOOP_COLOR, DEFAULT_SONG_BPM, DEFAULT_TIME_SIGNATURE
from music.positions import BEATS_PER_BAR, STEPS_PER_BAR
from music.schema import storable_text

# Text that both databases can store (no NUL, no lone surrogate); every input string uses it.
Text = Annotated[str, AfterValidator(storable_text)]
Color = Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$", examples=["#FFD11A"])]
Name = Annotated[Text, Field(min_length=1, max_length=bounds.MAX_NAME_LEN)]
SchemaVersion = Annotated[int, Field(ge=bounds.MIN_SCHEMA_VERSION, le=bounds.MAX_SCHEMA_VERSION)]
ShortText = Annotated[Text, Field(min_length=1, max_length=bounds.MAX_SHORT_TEXT)]
Identifier = Annotated[Text, Field(min_length=1, max_length=bounds.MAX_ID_LEN)]
# The unit of each position, as music/positions.py defines them (docs/musical-time.md).
TIME = "docs/musical-time.md"
LOOP_LENGTH_UNIT = (
    f"bars of 4/4 ({STEPS_PER_BAR} steps, {BEATS_PER_BAR} beats each): a loop has length x "
    f"{STEPS_PER_BAR} steps and length x {BEATS_PER_BAR} beats (the composer's `bars`; {TIME})"
)
STEP_UNIT = (
    f"sixteenths from the loop's start, 0 <= step < length x {STEPS_PER_BAR} "
    f"(the composer writes `bar`, despite the name; {TIME})"
)
CHORD_UNIT = (
    f"**beats** (quarter notes) from the loop's start, despite the name: "
    f"0 <= bar < length x {BEATS_PER_BAR} ({TIME})"
)
DURATION16_UNIT = "sixteenths the step sounds for (absent: 1); the player cuts it at the loop's end"
PITCH_UNIT = "MIDI note number (60 is C4); wins over `note`; drums ignore it"
NOTE_UNIT = 'note name ("C4" is MIDI 60, "F#3", "Bb-1"); `pitch` wins when both are given'
BPM_UNIT = "beats (quarter notes) per minute; a step lasts 60 / bpm / 4 s"
BLOCK_BARS_UNIT = f"bars of {STEPS_PER_BAR} steps, whatever the song's `timeSignature` ({TIME})"

# Literal[(a, b)] is Literal[a, b]: the choices come from the one tuple.
LoopLength = Literal[bounds.LOOP_LENGTHS]  # type: ignore[valid-type]
Bpm = Annotated[int, Field(ge=bounds.MIN_BPM, le=bounds.MAX_BPM, description=BPM_UNIT)]
TimeSignature = Literal[bounds.TIME_SIGNATURES]  # type: ignore[valid-type]

# Fields the server owns. A client that sends back what it fetched is not an error.
SERVER_MANAGED = frozenset(
    {"id", "userId", "createdAt", "updatedAt", "viewCount", "forkCount", "forkedFrom", "totalBars"}
)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class InputModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _no_nul_characters(cls, data: Any) -> Any:
        # Postgres text cannot hold U+0000 (and no client means to send it): a 400, not a 500.
        if _has_nul(data):
            raise ValueError("text may not contain NUL (U+0000) characters")
        return data


def _reject_both(data: Any, *names: str) -> Any:
    if isinstance(data, dict) and sum(name in data for name in names) > 1:
        raise ValueError(f"give only one of {' / '.join(repr(n) for n in names)}")
    return data


class ChordCell(InputModel):
    bar: int = Field(ge=0, le=bounds.MAX_CHORD_BAR, description=CHORD_UNIT)
    chord: ShortText
    roman: ShortText | None = None
    root: ShortText | None = None
    quality: ShortText | None = None


class IconStep(InputModel):
    step: int = Field(
        ge=0, le=bounds.MAX_STEP, validation_alias=AliasChoices("step", "bar"), description=STEP_UNIT
    )
    sound_id: Text = Field(min_length=1, max_length=bounds.MAX_SOUND_ID_LEN)
    velocity: float = Field(default=bounds.DEFAULT_VELOCITY, ge=0, le=1)
    note: str | None = Field(default=None, pattern=f"^{bounds.NOTE_PATTERN}$", description=NOTE_UNIT)
    pitch: int | None = Field(default=None, ge=0, le=bounds.MAX_PITCH, description=PITCH_UNIT)
    row: int | None = Field(default=None, ge=0, le=bounds.MAX_ROW)
    duration16: int | None = Field(
        default=None, ge=bounds.MIN_DURATION16, le=bounds.MAX_DURATION16, description=DURATION16_UNIT
    )

    @model_validator(mode="before")
    @classmethod
    def _one_position(cls, data: Any) -> Any:
        return _reject_both(data, "step", "bar")


class TimelineBlock(InputModel):
    id: Identifier
    loop_id: Identifier
    start_bar: int = Field(ge=0, le=bounds.MAX_START_BAR, description=BLOCK_BARS_UNIT)
    duration: int = Field(
        ge=1,
        le=bounds.MAX_BLOCK_DURATION,
        validation_alias=AliasChoices("duration", "bars"),
        description=f"{BLOCK_BARS_UNIT}; the composer writes `bars`",
    )
    color: Color | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_duration(cls, data: Any) -> Any:
        return _reject_both(data, "duration", "bars")


def absent_means_unchanged(schema: dict[str, Any]) -> None:
    """JSON schema of a partial update: a field that is absent stays unchanged, so its
    ``default`` (None, standing for "absent") is not a value a client may send; it is left
    out of the schema unless the field also accepts ``null``."""
    for prop in schema.get("properties", {}).values():
        if prop.get("default", ...) is None and not _accepts_null(prop):
            del prop["default"]


def _accepts_null(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "null" or any(_accepts_null(option) for option in prop.get("anyOf", ()))


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


ChordProgression = Annotated[
    list[ChordCell], Field(max_length=bounds.MAX_CHORD_CELLS), AfterValidator(_unique_bars)
]
IconSequence = Annotated[list[IconStep], Field(max_length=bounds.MAX_STEPS)]
Timeline = Annotated[
    list[TimelineBlock], Field(max_length=bounds.MAX_TIMELINE_BLOCKS), AfterValidator(_unique_block_ids)
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
    length: LoopLength = Field(validation_alias=AliasChoices("length", "bars"), description=LOOP_LENGTH_UNIT)
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

    model_config = ConfigDict(json_schema_extra=absent_means_unchanged)

    name: Name = None  # type: ignore[assignment]  # absent = unchanged; null is refused
    length: LoopLength = Field(  # type: ignore[assignment]
        default=None, validation_alias=AliasChoices("length", "bars"), description=LOOP_LENGTH_UNIT
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
    bpm: Bpm = DEFAULT_SONG_BPM
    time_signature: TimeSignature = DEFAULT_TIME_SIGNATURE
    schema_version: SchemaVersion | None = None
    timeline: Timeline = Field(default_factory=list)
    is_public: bool = False


class SongUpdate(_DocumentInput):
    """Partial update: only the fields present change."""

    model_config = ConfigDict(json_schema_extra=absent_means_unchanged)

    name: Name = None  # type: ignore[assignment]
    bpm: Bpm = None  # type: ignore[assignment]
    time_signature: TimeSignature = None  # type: ignore[assignment]
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
    scope: Literal["mine", "collaborating"] = Field(
        default="mine", description="`mine` (yours) or `collaborating` (where you are an editor or viewer)"
    )


class SongQuery(QueryModel):
    include: Literal["loops"] | None = Field(
        default=None, description="`loops` adds the loops of the timeline (one request for a whole song)"
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
        # Every field is in every answer (defaults too), so the schema says they are required.
        json_schema_serialization_defaults_required=True,
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
    length: int = Field(description=LOOP_LENGTH_UNIT)
    bpm: int | None = Field(description=BPM_UNIT)
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
    bpm: int = Field(description=BPM_UNIT)
    time_signature: str
    schema_version: int | None
    total_bars: int = Field(description=f"the timeline's end: {BLOCK_BARS_UNIT}")
    is_public: bool
    view_count: int
    fork_count: int
    forked_from: uuid.UUID | None
    created_at: Timestamp
    updated_at: Timestamp


class SongPublic(SongSummary):
    timeline: list[dict[str, Any]]


CONTENT_OMITTED = (
    "`true`: past the page's content budget (`LIST_CONTENT_BUDGET_BYTES`), this item comes "
    "without its content; `GET` the document for it"
)


class LoopContentOmitted(LoopSummary):
    """A loop of a page asked ``include=content`` for, past the page's content budget."""

    content_omitted: Literal[True] = Field(description=CONTENT_OMITTED)


class SongContentOmitted(SongSummary):
    """A song of a page asked ``include=content`` for, past the page's content budget."""

    content_omitted: Literal[True] = Field(description=CONTENT_OMITTED)


class SongWarning(OutputModel):
    """Something about a saved song worth telling its author; the song was saved as sent."""

    code: Literal["unknown_loop"]
    error: str
    details: list[dict[str, Any]] = Field(
        description="one {blockId, loopId, reason} per block, as POST /api/migrate reports the blocks it "
        "leaves out"
    )


class SongWritten(SongPublic):
    """A song as ``POST`` / ``PATCH /api/songs`` answer it: with what the author should know."""

    warnings: list[SongWarning] = Field(
        description="`unknown_loop`: timeline blocks naming a loop that does not exist or that you may "
        "not read (kept in the timeline; players skip them)"
    )


class SongDetail(SongPublic):
    """A song as ``GET /api/songs/{id}`` answers it; ``?include=loops`` adds its loops."""

    loops: list[LoopPublic] | None = Field(
        default=None,
        description="with ?include=loops: every loop the timeline uses that you may read, with its "
        "live content (null without it)",
    )
    missing_loop_ids: list[str] | None = Field(
        default=None,
        description="with ?include=loops: loop ids of the timeline that do not exist or that you "
        "may not read (null without it)",
    )


class LoopList(OutputModel):
    loops: list[LoopPublic | LoopContentOmitted | LoopSummary]
    total: int
    page: int
    has_more: bool


class SongList(OutputModel):
    songs: list[SongPublic | SongContentOmitted | SongSummary]
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
    refresh_token: Text = Field(min_length=1, max_length=200)


class LinkRequest(InputModel):
    id_token: Text = Field(min_length=1, max_length=8192, description="a Firebase ID token")


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


# --- operations ---------------------------------------------------------------------------


class CheckResult(OutputModel):
    name: str = Field(max_length=64)
    status: Literal["ok", "degraded", "failing"]
    detail: str = Field(max_length=500)


class BusStatus(OutputModel):
    state: Literal["up", "down", "stopped"]
    backend: str
    outages: int


class Readiness(OutputModel):
    """``ok``, or ``degraded`` while a dependency such as the cross-instance bus is down but
    the instance still serves its own clients (taking every instance out at once would be worse)."""

    status: Literal["ok", "degraded"]
    checks: list[CheckResult] = Field(max_length=32)
    bus: BusStatus


# --- sharing, forks, collaborators (issue 8) ----------------------------------------------

MAX_SHARE_DAYS = 3650
# A username, matched whole (``fullmatch``: with ``re.match`` and ``$``, "admin\n" passed).
USERNAME_PATTERN = re.compile(r"[a-z0-9_]{3,30}")


def username_syntax(value: str) -> str:
    """``value`` lowercased if it can be a username; ValueError (pydantic-compatible) if not."""
    value = value.lower()
    if not USERNAME_PATTERN.fullmatch(value):
        raise ValueError("a username is 3 to 30 characters: letters a-z, digits and '_'")
    return value


# A username naming an account (collaborators); new usernames also avoid the reserved names
# (rest/community_schemas.py).
Username = Annotated[str, Field(min_length=3, max_length=30), AfterValidator(username_syntax)]
CollaboratorRole = Literal["editor", "viewer"]


class ShareCreate(InputModel):
    expires_in: float | None = Field(
        default=None,
        gt=0,
        le=MAX_SHARE_DAYS,
        description="days until the link expires (fractions allowed); null or absent: never",
    )


class SharePublic(OutputModel):
    share_url: str
    share_token: str
    resource_type: Literal["loop", "song"]
    resource_id: uuid.UUID
    created_at: Timestamp
    expires_at: Timestamp | None
    expired: bool


class ShareList(OutputModel):
    shares: list[SharePublic]


class OwnerPublic(OutputModel):
    display_name: str | None
    avatar_url: str | None


class SharedDocument(OutputModel):
    resource_type: Literal["loop", "song"]
    data: dict[str, Any] = Field(description="the loop or song, with its live content")
    owner: OwnerPublic


class ForkRequest(InputModel):
    share_token: str | None = Field(
        default=None, min_length=1, max_length=64, description="fork through a share link you hold"
    )


class CollaboratorAdd(InputModel):
    username: Username
    role: CollaboratorRole


class CollaboratorUpdate(InputModel):
    role: CollaboratorRole


class CollaboratorPublic(OutputModel):
    username: str | None
    display_name: str | None
    avatar_url: str | None
    role: CollaboratorRole


class CollaboratorList(OutputModel):
    collaborators: list[CollaboratorPublic]


# --- samples ----------------------------------------------------------------------------


class SampleUploadForm(InputModel):
    """``multipart/form-data`` of ``POST /api/samples/upload`` (documentation only)."""

    file: bytes = Field(description="a WAV (PCM or float) or MP3 file, at most 5 MiB (5 x 1024 x 1024 bytes)")
    name: str | None = Field(
        default=None, max_length=400, description="display name (default: the file name)"
    )


class SampleListQuery(QueryModel):
    page: int = Field(default=1, ge=1, le=100_000)
    limit: int = Field(default=50, ge=1, le=100)


class SamplePublic(OutputModel):
    id: uuid.UUID
    name: str
    file_url: str = Field(description="where to fetch the audio (public, or signed for a limited time)")
    file_size: int = Field(description="bytes")
    mime_type: Literal["audio/wav", "audio/mpeg"]
    duration: float | None = Field(description="seconds")
    created_at: Timestamp


class SampleList(OutputModel):
    samples: list[SamplePublic]
    total_size: int = Field(description="bytes used by all your samples")
    quota: int = Field(description="bytes you may use in total")
    total: int
    page: int
    has_more: bool


class LoopSample(OutputModel):
    """A sample a loop references (``soundId: "sample:<id>"``); deleted ones are ``missing``."""

    id: str
    name: str | None
    file_url: str | None
    duration: float | None
    missing: bool


class LoopDetail(LoopPublic):
    samples: list[LoopSample] = Field(description="the samples the loop's steps reference")
