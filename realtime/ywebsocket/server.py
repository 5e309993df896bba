"""The y-websocket edge: the npm ``y-websocket`` client's protocol on aiohttp WebSockets.

Endpoints ``/ws/loop:<uuid>`` and ``/ws/song:<uuid>`` (the stock ``WebsocketProvider`` with
``serverUrl = <origin>/ws`` and ``roomname = loop:<uuid>``), credentials as the query
parameters ``token`` or ``shareToken`` (the provider's ``params``) or in a first auth message
(``protocol.auth_message``). The same rooms, rights and limits as the Socket.IO wire: the
handshake is ``realtime.handshake``'s, edits go through ``DocumentService.client_update``
(durable before relayed), awareness through ``client_awareness``, so clients of both wires
share one room and its presence, on every instance. y-websocket has no error message: what
the server refuses closes the connection with a code (``close_codes``). See
docs/y-websocket.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from aiohttp import WSMsgType, web
from pycrdt import YSyncMessageType

from identity.authenticator import Authenticator
from music.lib0 import MalformedPayload
from music.yjs_checks import check_state_vector
from realtime.errors import ErrorCode, RealtimeError
from realtime.handshake import Credentials, Refusal, admit, parse_document_name
from realtime.rooms import Room, Session
from realtime.service import DocumentService
from realtime.wires import MAX_SEND_BACKLOG_BYTES
from realtime.ywebsocket import protocol
from realtime.ywebsocket.close_codes import FOR_ERROR, FOR_REFUSAL, PERMISSION_DENIED, CloseCode
from realtime.ywebsocket.protocol import MalformedMessage, MessageType

log = logging.getLogger(__name__)

PATH: Final = "/ws/{name}"
NAME_HELP: Final = "unknown document; use /ws/loop:<id> or /ws/song:<id> with the id as a lowercase UUID"
# Room for a message's header (type, sync type, length) around the largest update a client
# may send: a bigger frame is refused by aiohttp itself (1009) before it is read whole.
FRAME_OVERHEAD: Final = 16
CLOSE_TIMEOUT: Final = 1.0  # seconds a close handshake may take before the transport is dropped
MAX_CLOSE_REASON: Final = 123  # bytes: the WebSocket limit for a close reason


class Connection:
    """One y-websocket client: its socket, its send queue and writer, its session once admitted.

    Frames are queued and written by one writer task, so fan-out never waits on a slow
    reader; what is queued plus the transport's write buffer is bounded by
    ``MAX_SEND_BACKLOG_BYTES`` (past it the connection is dropped and the client resyncs when
    it reconnects).
    """

    def __init__(self, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.ws = ws
        self.request = request
        self.sid = f"yws-{uuid.uuid4().hex}"
        self.room: Room | None = None
        self.session: Session | None = None
        self.closing = False
        self._queue: collections.deque[bytes] = collections.deque()
        self._backlog = 0
        self._wakeup = asyncio.Event()
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name=f"ywebsocket-writer-{self.sid}"
        )

    def queue(self, frame: bytes) -> bool:
        """Queue ``frame``; False if the connection is closing or was dropped for its backlog."""
        if self.closing:
            return False
        self._queue.append(frame)
        self._backlog += len(frame)
        transport = self.request.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        if self._backlog + buffered > MAX_SEND_BACKLOG_BYTES:
            log.warning("%s: %d bytes unsent; dropping the connection", self.sid, self._backlog + buffered)
            self.drop()
            return False
        self._wakeup.set()
        return True

    async def _write(self) -> None:
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue:
                    frame = self._queue.popleft()
                    self._backlog -= len(frame)
                    await self.ws.send_bytes(frame)
        except (ConnectionError, RuntimeError):  # the socket went away under us
            self.drop()

    def drop(self) -> None:
        """Abort the connection at once (no close handshake): a socket that does not read."""
        self.closing = True
        self._queue.clear()
        self._backlog = 0
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def close(self, code: CloseCode, reason: str, words: str = "") -> None:
        """Close with ``code``; ``reason`` is the machine code (e.g. ``access_revoked``),
        ``words`` the message for people, sent first as y-protocols' permission-denied for the
        codes of ``PERMISSION_DENIED``."""
        if self.closing:
            return
        self.closing = True
        self._queue.clear()
        with contextlib.suppress(Exception):
            if code in PERMISSION_DENIED and words:
                await asyncio.wait_for(self.ws.send_bytes(protocol.permission_denied(words)), CLOSE_TIMEOUT)
            await self.ws.close(code=code, message=reason.encode()[:MAX_CLOSE_REASON])

    async def stop_writer(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer


class YWebSocketServer:
    """The y-websocket wire, a transport of the document service's rooms (``realtime.wires``)."""

    def __init__(
        self,
        service: DocumentService,
        auth: Authenticator,
        *,
        cors_origins: Iterable[str] | str = (),
        connect_refusal: Callable[[dict[str, Any]], Awaitable[str | None]] | None = None,
    ) -> None:
        self.service = service
        self.auth = auth
        # Browsers send their page's Origin: only the API's CORS origins may open a socket, as
        # for Socket.IO ("*": any). Other clients send none.
        self._origins = None if cors_origins == "*" else frozenset(cors_origins)
        self._connect_refusal = connect_refusal  # per-IP connection attempts, as for Socket.IO
        self.max_frame_bytes = service.limits.max_update_bytes + FRAME_OVERHEAD
        self.connections: dict[str, Connection] = {}  # by session id, once admitted
        self.accepting = True
        self.refused: Counter[str] = Counter()  # connections closed for a refusal, by reason (metrics)
        self._closes: set[asyncio.Task[None]] = set()
        service.attach_transport(self)

    def attach(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.handle, name="ywebsocket")

    # --- transport (RoomTransport) ----------------------------------------------------

    def send(self, namespace: str, sessions: Iterable[Session], event: str, data: Any) -> None:
        if event == "sync-update":
            frame = protocol.sync_message(YSyncMessageType.SYNC_UPDATE, data)
        elif event == "awareness-update":
            frame = protocol.awareness_message(data)
        elif event == "error":  # an edit that could not be stored: close, the reconnect resyncs
            for session in sessions:
                if isinstance(session.transport_id, Connection):
                    self._closing(session.transport_id, ErrorCode(data["code"]), data["message"])
            return
        else:
            return  # presence, role changes, named events: y-websocket has no message for them
        sent = 0
        for session in sessions:
            connection = session.transport_id
            if isinstance(connection, Connection) and connection.queue(frame):
                sent += 1
        if event == "sync-update":
            self.service.deliveries += sent

    async def disconnect(self, namespace: str, session: Session, code: str, message: str) -> None:
        connection = session.transport_id
        if isinstance(connection, Connection):
            await self._refuse(connection, FOR_ERROR[ErrorCode(code)], code, message)

    # --- lifecycle --------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Refuse new sockets; close every one with 1012 so clients reconnect to a successor."""
        self.accepting = False
        for connection in list(self.connections.values()):
            await self._leave(connection)
            await connection.close(CloseCode.RESTART, "server restarting")

    # --- one connection ---------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            max_msg_size=self.max_frame_bytes,
            timeout=CLOSE_TIMEOUT,
            compress=False,  # small Yjs deltas do not deflate (docs/architecture.md)
            autoping=True,
        )
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="a y-websocket endpoint: connect with a WebSocket")
        await ws.prepare(request)
        connection = Connection(ws, request)
        try:
            if await self._open(connection, request):
                await self._serve(connection)
        finally:
            await self._leave(connection)
            await connection.stop_writer()
            if not ws.closed:
                await ws.close()
        return ws

    async def _open(self, connection: Connection, request: web.Request) -> bool:
        """Admit the connection into its room and start the sync; False if it was refused."""
        if not self.accepting:
            await connection.close(CloseCode.RESTART, "server restarting")
            return False
        origin = request.headers.get("Origin")
        if origin is not None and self._origins is not None and origin not in self._origins:
            await self._refuse(
                connection, CloseCode.FORBIDDEN, "forbidden_origin", f"origin {origin[:60]} is not allowed"
            )
            return False
        if self._connect_refusal is not None and (
            refusal := await self._connect_refusal({"aiohttp.request": request})
        ):
            await self._refuse_error(connection, ErrorCode.RATE_LIMITED, refusal)
            return False
        parsed = parse_document_name(request.match_info["name"])
        if parsed is None:
            await self._refuse(connection, CloseCode.BAD_REQUEST, "bad_request", NAME_HELP)
            return False
        kind, doc_id = parsed
        try:
            credentials = await self._credentials(connection, request, kind)
            if credentials is None:
                return False
            room, session = await admit(
                self.service,
                self.auth,
                kind,
                doc_id,
                credentials,
                sid=connection.sid,
                wire=self,
                transport_id=connection,
            )
        except Refusal as refusal:
            reason = refusal.data.get("code", refusal.kind.value) if refusal.data else refusal.kind.value
            await self._refuse(connection, FOR_REFUSAL[refusal.kind], str(reason), refusal.message)
            return False
        connection.room, connection.session = room, session
        self.connections[session.sid] = connection
        if connection.closing:  # closed while admitted (the socket went, or the server stops)
            return False
        # Our state vector: the client answers with what we lack (its sync step 2).
        connection.queue(protocol.sync_message(YSyncMessageType.SYNC_STEP1, room.state_vector()))
        awareness = room.awareness.encode_all()
        if awareness is not None:
            connection.queue(protocol.awareness_message(awareness))
        return True

    async def _credentials(
        self, connection: Connection, request: web.Request, kind: Any
    ) -> Credentials | None:
        """From the query (``token``, ``shareToken``) or else the first message, an auth
        message, awaited for ``RT_CONNECT_TIMEOUT_SECONDS``. Raises ``Refusal``."""
        query = request.query
        if "token" in query or "shareToken" in query:
            return Credentials.read(query.get("token"), query.get("shareToken"), kind)
        try:
            message = await connection.ws.receive(timeout=self.service.limits.socket_connect_timeout)
        except TimeoutError:
            await self._refuse(
                connection,
                CloseCode.AUTH_TIMEOUT,
                "auth_timeout",
                "no credentials in time",
            )
            return None
        if message.type is not WSMsgType.BINARY:
            return None if message.type in _GONE else Credentials.read(None, None, kind)
        try:
            parsed = protocol.parse(message.data)
        except MalformedMessage as exc:
            await self._refuse(connection, CloseCode.BAD_REQUEST, "bad_request", str(exc))
            return None
        try:
            if parsed.type is not MessageType.AUTH:
                raise ValueError("not an auth message")
            fields = json.loads(parsed.payload)
        except ValueError:
            return Credentials.read(None, None, kind)  # authentication required
        if not isinstance(fields, dict):
            return Credentials.read(None, None, kind)
        return Credentials.read(fields.get("token"), fields.get("shareToken"), kind)

    async def _serve(self, connection: Connection) -> None:
        ws = connection.ws
        while not connection.closing:
            message = await ws.receive()
            if message.type is WSMsgType.BINARY:
                await self._on_frame(connection, message.data)
            elif message.type is WSMsgType.TEXT:
                await self._refuse(connection, CloseCode.BAD_REQUEST, "bad_request", "frames are binary")
            elif message.type is WSMsgType.ERROR:
                # aiohttp has closed it (1009 for a frame over max_msg_size, 1002 for junk).
                self.refused["frame_error"] += 1
                return
            else:  # CLOSE, CLOSING, CLOSED
                return

    async def _on_frame(self, connection: Connection, frame: bytes) -> None:
        room, session = connection.room, connection.session
        assert room is not None and session is not None
        if not session.bucket.take():
            await self._refuse_error(connection, ErrorCode.RATE_LIMITED, "too many messages; slow down")
            return
        try:
            message = protocol.parse(frame)
        except MalformedMessage as exc:
            await self._refuse(connection, CloseCode.BAD_REQUEST, "bad_request", str(exc))
            return
        try:
            if message.type is MessageType.SYNC:
                self._on_sync(connection, room, session, message)
            elif message.type is MessageType.AWARENESS:
                try:
                    self.service.client_awareness(room, session, message.payload)
                except ValueError as exc:
                    raise RealtimeError(ErrorCode.MALFORMED_AWARENESS, str(exc)) from None
                # Echoed to its sender as y-websocket-server does (the room relays to the
                # others): the stock client drops a socket that hears nothing for 30 s and
                # counts on this echo of its 15 s awareness renewal to stay connected.
                connection.queue(frame)
            elif message.type is MessageType.QUERY_AWARENESS:
                awareness = room.awareness.encode_all()
                if awareness is not None:
                    connection.queue(protocol.awareness_message(awareness))
            else:  # an auth message once admitted
                raise RealtimeError(ErrorCode.UNKNOWN_EVENT, "already authenticated")
        except RealtimeError as exc:
            await self._refuse_error(connection, exc.code, exc.message)

    def _on_sync(
        self, connection: Connection, room: Room, session: Session, message: protocol.Message
    ) -> None:
        if message.sync_type is YSyncMessageType.SYNC_STEP1:
            try:
                check_state_vector(message.payload, max_bytes=self.service.limits.max_update_bytes)
            except (MalformedPayload, ValueError):
                raise RealtimeError(ErrorCode.MALFORMED_MESSAGE, "not a valid Yjs state vector") from None
            missing = room.missing_update(message.payload)
            connection.queue(protocol.sync_message(YSyncMessageType.SYNC_STEP2, missing))
        elif message.sync_type is YSyncMessageType.SYNC_STEP2 and not session.role.can_write:
            return  # a viewer's local edits are never taken, not even through the handshake
        else:
            self.service.client_update(room, session, message.payload)

    def _closing(self, connection: Connection, code: ErrorCode, message: str) -> None:
        """Close a connection from synchronous code (a task, owned until done)."""
        task = asyncio.get_running_loop().create_task(
            self._refuse_error(connection, code, message), name=f"ywebsocket-close-{connection.sid}"
        )
        self._closes.add(task)
        task.add_done_callback(self._closes.discard)

    async def _refuse_error(self, connection: Connection, code: ErrorCode, message: str) -> None:
        await self._refuse(connection, FOR_ERROR[code], code.value, message)

    async def _refuse(self, connection: Connection, code: CloseCode, reason: str, words: str) -> None:
        self.refused[reason] += 1
        log.debug("%s: closed %d %s: %s", connection.sid, code, reason, words)
        await self._leave(connection)
        await connection.close(code, reason, words)

    async def _leave(self, connection: Connection) -> None:
        session, room = connection.session, connection.room
        if session is None or room is None:
            return
        connection.session = connection.room = None
        self.connections.pop(session.sid, None)
        await self.service.leave(room, session)


_GONE: Final = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})
