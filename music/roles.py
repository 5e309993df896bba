"""What a person may do with a document: the one ``Role`` type of every layer."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Role(StrEnum):
    """The caller's role on one loop or song (``None`` where a role is expected: no access)."""

    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"

    @property
    def can_write(self) -> bool:
        return self in WRITERS


WRITERS: Final = frozenset({Role.OWNER, Role.EDITOR})
