"""Document content <-> the SQL columns that mirror it.

The live Yjs document is the content; a loop's or song's row keeps a copy of it in plain
columns (for listings, search and the JSON a REST read answers with when nobody is editing).
This is the one map between the JSON fields of the content and those columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

# JSON field of the content -> SQL column, for the columns refreshed from the document.
COLUMNS: Final[Mapping[str, str]] = {
    "name": "name",
    "length": "length",
    "bpm": "bpm",
    "color": "color",
    "schemaVersion": "schema_version",
    "chordProgression": "chord_progression",
    "iconSequence": "icon_sequence",
    "timeSignature": "time_signature",
    "timeline": "timeline",
    "totalBars": "total_bars",
}


def content_columns(content: Mapping[str, Any]) -> dict[str, Any]:
    """Document content -> the SQL columns that mirror it (for listings and search)."""
    return {COLUMNS[key]: value for key, value in content.items() if key in COLUMNS}


def row_content(row: object) -> dict[str, Any]:
    """The content mirrored in a row's columns (the inverse of :func:`content_columns`): the
    fields of every column the row has (a loop has no ``timeline``, a song no ``length``)."""
    return {key: getattr(row, column) for key, column in COLUMNS.items() if hasattr(row, column)}
