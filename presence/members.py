"""The authoritative list of who is in a room, built from verified tokens (not client claims)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from music.roles import Role


@dataclass(frozen=True)
class Member:
    user_id: uuid.UUID | None  # None: a guest with only a share link
    display_name: str
    role: Role


class RoomMembers:
    """Connected sessions of one room, grouped by user for display."""

    def __init__(self) -> None:
        self._sessions: dict[str, Member] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def add(self, session_id: str, member: Member) -> None:
        self._sessions[session_id] = member

    def items(self) -> list[tuple[str, Member]]:
        return list(self._sessions.items())

    def remove(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def as_json(self) -> list[dict[str, Any]]:
        """One entry per user: ``{userId, displayName, role, connections}``."""
        by_user: dict[uuid.UUID | str, dict[str, Any]] = {}
        for session_id, member in self._sessions.items():
            key = member.user_id or f"guest:{session_id}"  # guests are not one person
            entry = by_user.get(key)
            if entry is None:
                by_user[key] = {
                    "userId": str(member.user_id) if member.user_id else None,
                    "displayName": member.display_name,
                    "role": member.role,
                    "connections": 1,
                }
            else:
                entry["connections"] += 1
                if member.role.can_write and entry["role"] == Role.VIEWER:
                    entry["role"] = member.role
        return sorted(by_user.values(), key=lambda m: (m["displayName"], m["userId"] or ""))
