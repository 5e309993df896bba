"""Who may do what with a loop or song. Used by REST and by the real-time rooms."""

from __future__ import annotations

import uuid
from enum import StrEnum

from storage.models import Loop, Song


class Role(StrEnum):
    OWNER = "owner"
    EDITOR = "editor"
    VIEWER = "viewer"

    @property
    def can_write(self) -> bool:
        return self in (Role.OWNER, Role.EDITOR)


def role_for(document: Loop | Song, user_id: uuid.UUID | None) -> Role | None:
    """The caller's role on ``document``, or None when they may not even see it."""
    if user_id is not None and document.user_id == user_id:
        return Role.OWNER
    if document.is_public:
        return Role.VIEWER
    return None
