"""Document content <-> the SQL columns that mirror it.

The live Yjs document is the content; a loop's or song's row keeps a copy of it in plain
columns (for listings, search and the JSON a REST read answers with when nobody is editing).
Which field goes to which column is the kinds registry's (``music.kinds``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from music.kinds import KINDS

# JSON field of the content -> SQL column, over both kinds (a field means the same everywhere).
COLUMNS: Final[Mapping[str, str]] = {
    field: column for info in KINDS.values() for field, column in info.columns.items()
}


def content_columns(content: Mapping[str, Any]) -> dict[str, Any]:
    """Document content -> the SQL columns that mirror it (for listings and search)."""
    return {COLUMNS[key]: value for key, value in content.items() if key in COLUMNS}


def row_content(row: object) -> dict[str, Any]:
    """The content mirrored in a row's columns (the inverse of :func:`content_columns`): the
    fields of every column the row has (a loop has no ``timeline``, a song no ``length``)."""
    return {key: getattr(row, column) for key, column in COLUMNS.items() if hasattr(row, column)}
