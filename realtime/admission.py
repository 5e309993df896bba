"""Who may join a room: the per-user cap and the seats kept for owners and editors."""

from __future__ import annotations


def admission_refusal(
    sessions: list[tuple[str, bool]],
    *,
    identity: str,
    can_write: bool,
    max_clients: int,
    max_per_user: int,
) -> str | None:
    """Why a socket may not join a room (None: it may). ``sessions`` are the room's current
    ``(identity, can_write)`` pairs.

    One user holds at most ``max_per_user`` connections to a document, and the last quarter
    of the room is kept for owners and editors, so viewers can never lock out the people
    who edit (a share link may be public).
    """
    if sum(1 for who, _ in sessions if who == identity) >= max_per_user:
        return f"you already have {max_per_user} connections to this document; close one first"
    if len(sessions) >= max_clients:
        return f"this document already has {len(sessions)} connections"
    if not can_write and len(sessions) >= max_clients - writer_reserve(max_clients):
        return "this document has as many viewers as it can take; try again later"
    return None


def writer_reserve(max_clients: int) -> int:
    """Connections of a room that only owners and editors may use."""
    return max(1, max_clients // 4) if max_clients > 1 else 0
