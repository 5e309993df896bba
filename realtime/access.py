"""Who may do what to a live document: a caller's role, and the re-check of the roles of
connected sockets when the document's access rules change (visibility, shares, collaborators)."""

from __future__ import annotations

import uuid

from bus import Bus, BusState
from music.kinds import DocKind
from music.roles import Role
from presence.cluster import ClusterPresence
from realtime.errors import ErrorCode
from realtime.registry import RoomRegistry
from realtime.rooms import Room
from storage.access import load_access_rules, role_with_share
from storage.database import Database
from storage.errors import NotFound
from storage.kinds import document_model


class AccessControl:
    """Roles of callers, from a loaded room's access rules when they can be trusted."""

    def __init__(
        self, db: Database, bus: Bus, registry: RoomRegistry, presence: ClusterPresence[Room]
    ) -> None:
        self._db = db
        self._bus = bus
        self._registry = registry
        self._presence = presence

    async def role_of(
        self,
        kind: DocKind,
        doc_id: uuid.UUID,
        *,
        user_id: uuid.UUID | None,
        share_token: str | None,
    ) -> Role | None:
        """The caller's role. A loaded room answers from its access rules (kept current by
        access changes announced on the bus, so only while the bus is up); only a share token
        that the rules do not already outrank is looked up."""
        room = self._registry.loaded(kind, doc_id)
        rules = room.access if room is not None and self._bus.state is BusState.UP else None
        if rules is not None:
            role = rules.role(user_id)
            if role is not None or not share_token or rules.hidden:
                return role
        async with self._db.session() as session:
            if rules is None:
                rules = await load_access_rules(session, document_model(kind.value), doc_id)
            if rules is None:
                raise NotFound(f"{kind.value} not found")
            return await role_with_share(
                session,
                rules,
                resource_type=kind.value,
                resource_id=doc_id,
                user_id=user_id,
                share_token=share_token,
            )

    async def recheck_roles(self, kind: DocKind, doc_id: uuid.UUID) -> None:
        """Reload a loaded room's access rules and give every socket its role now: a socket
        that lost access is disconnected (``access_revoked``), one whose role changed is told
        (``role-changed``)."""
        room = self._registry.loaded(kind, doc_id)
        if room is None:
            return
        async with self._db.session() as db_session:
            rules = await load_access_rules(db_session, document_model(kind.value), doc_id)
            room.access = rules
            roles = {
                sid: (
                    await role_with_share(
                        db_session,
                        rules,
                        resource_type=kind.value,
                        resource_id=doc_id,
                        user_id=s.user_id,
                        share_token=s.share_token,
                    )
                    if rules is not None
                    else None
                )
                for sid, s in list(room.sessions.items())
            }
        for sid, role in roles.items():
            session = room.sessions.get(sid)
            if session is None or role == session.role:
                continue
            if role is None:
                await self._registry.transport.disconnect(
                    room.namespace,
                    session,
                    ErrorCode.ACCESS_REVOKED,
                    f"you no longer have access to this {kind.value}",
                )
            else:
                session.role = role
                room.members.add(sid, session.member)
                room.transport.send(room.namespace, [session], "role-changed", {"role": role.value})
        room.send_presence()
        self._presence.members_changed(room)
