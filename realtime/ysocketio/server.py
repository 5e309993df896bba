"""The Socket.IO edge: the y-socket.io protocol on python-socketio, one namespace per document.

Namespaces are ``/yjs|loop:<uuid>`` and ``/yjs|song:<uuid>``. Events (all payloads binary):
``sync-step-1`` (state vector; the ack returns what the sender lacks; the server sends its
own on connect), ``sync-update`` and ``awareness-update``. Our own events: ``error``
``{code, message}``, ``presence`` ``{members}``, ``role-changed`` ``{role}``,
``server-shutdown`` ``{message}``. See docs/realtime.md.

Fan-out does not use ``AsyncServer.emit`` per room: that creates a task per recipient. An
event's WebSocket frames are built once and put straight on each recipient's Engine.IO send
queue, whose writer task writes them (``realtime/ysocketio/engineio_adapter.py``, the only module that
touches those internals; it also declines WebSocket compression, see docs/realtime.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import socketio
from aiohttp import web
from socketio.exceptions import ConnectionRefusedError as SocketRefused

from identity.authenticator import Authenticator
from music.lib0 import MalformedPayload
from music.yjs_checks import check_state_vector
from realtime.errors import REFUSED_UPDATE_CODES, ErrorCode, RealtimeError
from realtime.handshake import Credentials, Refusal, admit
from realtime.rooms import Room, Session
from realtime.service import DocumentService
from realtime.ysocketio import engineio_adapter, packet_json
from realtime.ysocketio import packet as socketio_packet
from realtime.ysocketio.namespaces import NAMESPACE_HELP, parse_namespace

log = logging.getLogger(__name__)

EMPTY_UPDATE = b"\x00\x00"
# Refused updates each cost a rebuild of the room's document (a rollback): a socket that
# keeps sending them is hostile or broken, and is disconnected.
MAX_REFUSED_UPDATES = 10


class CollabSocketServer:
    """python-socketio server wired to the document service; also the rooms' transport."""

    def __init__(
        self,
        service: DocumentService,
        auth: Authenticator,
        *,
        cors_origins: list[str] | str,
        connect_refusal: Callable[[dict[str, Any]], Awaitable[str | None]] | None = None,
    ) -> None:
        self.service = service
        self.auth = auth
        # Per-IP connection-attempt limit: given the WSGI-style environ, why to refuse, or None.
        self._connect_refusal = connect_refusal
        # Above our own update limit, so an oversize update gets an error event instead of a
        # closed transport (which y-socket.io would answer with the same update).
        frame_limit = service.limits.max_update_bytes + 64 * 1024
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            namespaces="*",
            transports=["websocket"],
            cors_allowed_origins=cors_origins,
            max_http_buffer_size=frame_limit,
            logger=False,
            engineio_logger=False,
            # Handlers never wait on storage (edits are relayed from the log's commit
            # callback), so each socket's messages are handled inline, in order, without a
            # task per message at either the Socket.IO or the Engine.IO layer.
            async_handlers=False,
            # One packet holds at most a frame's worth of attachment and an honest text part,
            # so any update that fits in a frame still gets its error event.
            serializer=socketio_packet.packet_class(max_bytes=frame_limit + socketio_packet.MAX_TEXT_BYTES),
            json=packet_json,
        )
        self.sio.eio.async_handlers = False
        self.sessions: dict[str, tuple[Room, Session]] = {}
        self._requests: dict[str, web.BaseRequest] = {}  # the HTTP request under each socket
        self.accepting = True
        self._disconnects: set[asyncio.Task[None]] = set()
        self.refused: Counter[str] = Counter()  # client messages refused, by error code (metrics)
        service.attach_transport(self)
        # Guarded: a handler's failure is logged with its traceback, apart from malformed frames.
        guarded = engineio_adapter.guarded
        self.sio.on("connect", guarded(self._on_connect), namespace="*")
        self.sio.on("disconnect", guarded(self._on_disconnect), namespace="*")
        self.sio.on("sync-step-1", guarded(self._on_sync_step_1), namespace="*")
        self.sio.on("sync-update", guarded(self._on_sync_update), namespace="*")
        self.sio.on("awareness-update", guarded(self._on_awareness_update), namespace="*")
        self.sio.on("*", guarded(self._on_unknown_event), namespace="*")
        self._on_sync_step_1_reply_guarded = guarded(self._on_sync_step_1_reply)

    def attach(self, app: web.Application) -> None:
        engineio_adapter.install(self.sio, connect_timeout=self.service.limits.socket_connect_timeout)
        self.sio.attach(app)

    # --- transport (RoomTransport) ----------------------------------------------------

    def send(self, namespace: str, sessions: Iterable[Session], event: str, data: Any) -> None:
        packet = engineio_adapter.encode_event(self.sio, namespace, event, data)
        sent = engineio_adapter.queue_frames(self.sio, (s.transport_id for s in sessions), packet)
        if event == "sync-update":
            self.service.deliveries += sent

    async def disconnect(self, namespace: str, session: Session, code: str, message: str) -> None:
        await self.sio.emit("error", {"code": code, "message": message}, to=session.sid, namespace=namespace)
        await self.sio.disconnect(session.sid, namespace=namespace)

    # --- lifecycle --------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Refuse new sockets, tell everyone, then drop the transports so clients reconnect."""
        self.accepting = False
        log.info("shutting down: closing %d sockets", len(self.sessions))
        for room, session in list(self.sessions.values()):
            self.send(
                room.namespace, [session], "server-shutdown", {"message": "server restarting; reconnect"}
            )
        await asyncio.sleep(0.05)  # let the writer tasks flush the notice
        for room, session in list(self.sessions.values()):
            await self.service.leave(room, session)
            # Drop the connection itself: a lost transport (unlike a Socket.IO or Engine.IO
            # disconnect) is what makes clients reconnect, to this server's successor.
            request = self._requests.pop(session.sid, None)
            if request is not None and request.transport is not None:
                request.transport.close()
        self.sessions.clear()
        log.info("sockets closed")

    # --- handlers -----------------------------------------------------------------------

    async def _on_connect(self, namespace: str, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if not self.accepting:
            raise SocketRefused("server is shutting down; try again")
        if self._connect_refusal is not None and (refusal := await self._connect_refusal(environ)):
            raise SocketRefused(refusal)
        parsed = parse_namespace(namespace)
        if parsed is None:
            raise SocketRefused(NAMESPACE_HELP)
        kind, doc_id = parsed
        auth = auth if isinstance(auth, dict) else {}
        try:
            credentials = Credentials.read(auth.get("token"), auth.get("shareToken"), kind)
            room, session = await admit(
                self.service,
                self.auth,
                kind,
                doc_id,
                credentials,
                sid=sid,
                wire=self,
                transport_id=engineio_adapter.engineio_sid(self.sio, sid, namespace),
            )
        except Refusal as refusal:
            raise SocketRefused(refusal.message, *([refusal.data] if refusal.data else [])) from None
        role = session.role
        self.sessions[sid] = (room, session)
        engineio_adapter.namespace_joined(self.sio, session.transport_id)
        request = environ.get("aiohttp.request")
        if request is not None:
            self._requests[sid] = request
        self.send(namespace, [session], "role-changed", {"role": role.value})
        await self.sio.emit(
            "sync-step-1",
            room.state_vector(),
            to=sid,
            namespace=namespace,
            callback=lambda *reply: self._on_sync_step_1_reply_guarded(sid, reply),
        )
        awareness = room.awareness.encode_all()
        if awareness is not None:
            self.send(namespace, [session], "awareness-update", awareness)

    async def _on_disconnect(self, namespace: str, sid: str, reason: Any = None) -> None:
        entry = self.sessions.pop(sid, None)
        self._requests.pop(sid, None)
        if entry is not None:
            engineio_adapter.namespace_left(self.sio, entry[1].transport_id)
            await self.service.leave(*entry)

    def _session(self, sid: str) -> tuple[Room, Session] | None:
        entry = self.sessions.get(sid)
        if entry is None:
            return None
        room, session = entry
        if not session.bucket.take():
            self._error(room, session, ErrorCode.RATE_LIMITED, "too many messages; slow down")
            return None
        return entry

    def _error(self, room: Room, session: Session, code: str, message: str) -> None:
        self.refused[code] += 1
        now = time.monotonic()
        if code is ErrorCode.RATE_LIMITED and now - session.last_error_at < 1.0:
            return  # one rate-limit notice a second is enough
        session.last_error_at = now
        self.send(room.namespace, [session], "error", {"code": code, "message": message})

    async def _on_sync_step_1(self, namespace: str, sid: str, *args: Any) -> bytes:
        entry = self._session(sid)
        if entry is None:
            return EMPTY_UPDATE
        room, session = entry
        state_vector = args[0] if args else None
        if not isinstance(state_vector, bytes):
            self._error(
                room, session, ErrorCode.MALFORMED_MESSAGE, "sync-step-1 takes one binary state vector"
            )
            return room.missing_update(b"\x00")
        try:
            check_state_vector(state_vector, max_bytes=self.service.limits.max_update_bytes)
            return room.missing_update(state_vector)
        except (MalformedPayload, ValueError):
            self._error(
                room,
                session,
                ErrorCode.MALFORMED_MESSAGE,
                "not a valid Yjs state vector; sent the whole document",
            )
            return room.missing_update(b"\x00")

    async def _on_sync_step_1_reply(self, sid: str, reply: tuple[Any, ...]) -> None:
        entry = self.sessions.get(sid)
        if entry is None:
            return
        room, session = entry
        if not session.role.can_write:
            return  # a viewer's local edits are never taken, not even through the handshake
        self._apply_update(room, session, reply[0] if reply else None, "sync-step-1 reply")

    async def _on_sync_update(self, namespace: str, sid: str, *args: Any) -> None:
        entry = self._session(sid)
        if entry is not None:
            self._apply_update(*entry, args[0] if len(args) == 1 else None, "sync-update")

    def _apply_update(self, room: Room, session: Session, update: Any, what: str) -> None:
        if not isinstance(update, bytes):
            self._error(room, session, ErrorCode.MALFORMED_UPDATE, f"{what} takes one binary Yjs update")
            return
        try:
            self.service.client_update(room, session, update)
        except RealtimeError as exc:
            self._error(room, session, exc.code, exc.message)
            if exc.code in REFUSED_UPDATE_CODES:
                session.refused_updates += 1
                if session.refused_updates == MAX_REFUSED_UPDATES:
                    task = asyncio.get_running_loop().create_task(
                        self.disconnect(
                            room.namespace,
                            session,
                            ErrorCode.TOO_MANY_REFUSED_UPDATES,
                            "too many refused updates",
                        ),
                        name=f"disconnect-{session.sid}",
                    )
                    self._disconnects.add(task)  # owned until done
                    task.add_done_callback(self._disconnects.discard)

    async def _on_awareness_update(self, namespace: str, sid: str, *args: Any) -> None:
        entry = self._session(sid)
        if entry is None:
            return
        room, session = entry
        if len(args) != 1 or not isinstance(args[0], bytes):
            self._error(
                room, session, ErrorCode.MALFORMED_AWARENESS, "awareness-update takes one binary update"
            )
            return
        try:
            self.service.client_awareness(room, session, args[0])
        except ValueError as exc:
            self._error(room, session, ErrorCode.MALFORMED_AWARENESS, str(exc))

    async def _on_unknown_event(self, event: str, namespace: str, sid: str, *args: Any) -> None:
        entry = self._session(sid)
        if entry is not None:
            self._error(*entry, ErrorCode.UNKNOWN_EVENT, f"unknown event {event!r}")
