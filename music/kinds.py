"""The kinds of collaborative document: the one registry every layer reads.

A loop and a song differ in their content (``music.schema``) and in these facts, written
once here: the JSON plural (list key, route segment and table name), the content fields that
a row mirrors in SQL columns, the heavy columns a listing leaves out, and the setting of the
per-user quota. Storage maps each kind to its SQLAlchemy model by table name
(``storage.kinds``); rest, realtime and the clients read the rest from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, TypeVar


class DocKind(StrEnum):
    """What a collaborative document holds; also the prefix of its room name (``loop:<id>``)."""

    LOOP = "loop"
    SONG = "song"

    @property
    def info(self) -> KindInfo:
        return KINDS[self]


LOOP: Final = DocKind.LOOP
SONG: Final = DocKind.SONG


@dataclass(frozen=True)
class KindInfo:
    """The facts of one kind of document besides its content's layout."""

    kind: DocKind
    plural: str  # "loops": the list key of the JSON, the route segment, the table
    columns: Mapping[str, str]  # content field (JSON) -> the SQL column that mirrors it
    heavy_columns: tuple[str, ...]  # JSON columns a listing leaves out unless include=content
    quota_setting: str  # the Settings attribute: how many a user may own

    @property
    def table(self) -> str:
        return self.plural

    @property
    def route_prefix(self) -> str:
        return f"/api/{self.plural}"


_SHARED_COLUMNS: Final = {"name": "name", "bpm": "bpm", "schemaVersion": "schema_version"}

KINDS: Final[Mapping[DocKind, KindInfo]] = {
    LOOP: KindInfo(
        LOOP,
        "loops",
        columns={
            **_SHARED_COLUMNS,
            "length": "length",
            "color": "color",
            "chordProgression": "chord_progression",
            "iconSequence": "icon_sequence",
        },
        heavy_columns=("chord_progression", "icon_sequence"),
        quota_setting="max_loops_per_user",
    ),
    SONG: KindInfo(
        SONG,
        "songs",
        columns={
            **_SHARED_COLUMNS,
            "timeSignature": "time_signature",
            "timeline": "timeline",
            "totalBars": "total_bars",
        },
        heavy_columns=("timeline",),
        quota_setting="max_songs_per_user",
    ),
}

T = TypeVar("T")


def by_kind(kind: DocKind | str, loop: T, song: T) -> T:
    """``loop`` or ``song`` by ``kind`` (ValueError for anything else)."""
    return loop if DocKind(kind) is LOOP else song


def kind_named(name: str) -> DocKind:
    """The kind of ``"loop"``/``"song"`` or ``"loops"``/``"songs"``; ValueError otherwise."""
    for kind, info in KINDS.items():
        if name in (kind.value, info.plural):
            return kind
    raise ValueError(f"unknown kind {name!r}")
