"""The rooms' one transport over several wires: each session is carried by its own wire
(the y-socket.io wire in ``realtime/ysocketio/``, the y-websocket wire in
``realtime/ywebsocket/``), so one room serves clients of both, and what one sends reaches
the others whatever they speak."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from realtime.rooms import RoomTransport, Session

# What one connection may have queued and unsent (its frames waiting, plus its transport's
# write buffer) before the server drops it: a socket that stops reading (or cannot keep up)
# must not make the server hold every edit of its room for it; its client reconnects and
# syncs only what it lacks. Well above the largest message (a whole document, 8 MB at most,
# sent once on join). Every wire applies it.
MAX_SEND_BACKLOG_BYTES: Final = 32 * 1024 * 1024


class Wires:
    """A :class:`RoomTransport` that hands each session's messages to that session's wire.

    A session names its wire in ``Session.wire``; one without (tests' sessions) belongs to
    the first wire attached. A message for sessions of several wires is encoded once per wire.
    """

    def __init__(self) -> None:
        self._wires: list[RoomTransport] = []

    def add(self, wire: RoomTransport) -> None:
        self._wires.append(wire)

    def __bool__(self) -> bool:
        return bool(self._wires)

    @property
    def wires(self) -> tuple[RoomTransport, ...]:
        """The wires attached, in order."""
        return tuple(self._wires)

    def _wire_of(self, session: Session) -> RoomTransport:
        return session.wire if session.wire is not None else self._wires[0]

    def send(self, namespace: str, sessions: Iterable[Session], event: str, data: Any) -> None:
        if len(self._wires) == 1:
            self._wires[0].send(namespace, sessions, event, data)
            return
        groups: dict[int, tuple[RoomTransport, list[Session]]] = {}
        for session in sessions:
            wire = self._wire_of(session)
            group = groups.get(id(wire))
            if group is None:
                groups[id(wire)] = (wire, [session])
            else:
                group[1].append(session)
        for wire, members in groups.values():
            wire.send(namespace, members, event, data)

    async def disconnect(self, namespace: str, session: Session, code: str, message: str) -> None:
        await self._wire_of(session).disconnect(namespace, session, code, message)
