"""A Python client for the real-time collaboration protocol (y-socket.io over Socket.IO).

It speaks exactly what the npm ``y-socket.io`` ``SocketIOProvider`` speaks (see
``docs/realtime.md``), on top of ``socketio.AsyncClient`` (WebSocket transport only) and a
``pycrdt.Doc`` + ``pycrdt.Awareness``. It is used by the integration tests and the load-test
tool, and is a reference for Python client authors::

    async with CollabClient("http://127.0.0.1:8080", "loop", loop_id, token=token) as c:
        c.doc.get("meta", type=Map)["name"] = "New name"  # sent automatically
        c.set_awareness({"cursor": {"bar": 0, "step": 4, "row": 1}})
        await c.wait_for(lambda: len(c.remote_awareness()) > 0)

Behaviour, per connection (also after an automatic reconnect when ``reconnection=True``):

* The server's ``sync-step-1`` (its state vector, sent on connect) is answered with
  ``doc.get_update(sv)``: everything we have that the server lacks, offline edits included.
* We send our own ``sync-step-1`` (our state vector) and apply the update in its ack.
  :attr:`CollabClient.synced` is set once both happened.
* Then our awareness state, if :meth:`CollabClient.set_awareness` gave one.
* Every later local transaction of the doc is sent as one ``sync-update``; every incoming
  ``sync-update`` is applied with the client's remote origin and not sent back.

Outgoing messages go through one ordered queue. While disconnected, local edits are not queued:
the next handshake sends them (``sync-step-1`` reply), exactly like the JS provider's offline
edits. Malformed data from the server never kills the client: the exception is recorded in
:attr:`CollabClient.protocol_errors`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, TypeVar

import engineio
import socketio
from pycrdt import Awareness, Decoder, Doc, TransactionEvent

from music.kinds import DocKind

__all__ = [
    "CollabClient",
    "CollabConnectionError",
    "CollabConnectionRefused",
    "decode_state_vector",
    "namespace_for",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

KINDS: Final = tuple(kind.value for kind in DocKind)

# Protocol events (y-socket.io) and our own server events.
SYNC_STEP_1: Final = "sync-step-1"
SYNC_UPDATE: Final = "sync-update"
AWARENESS_UPDATE: Final = "awareness-update"
ERROR: Final = "error"
PRESENCE: Final = "presence"
ROLE_CHANGED: Final = "role-changed"
SERVER_SHUTDOWN: Final = "server-shutdown"

EMPTY_UPDATE: Final = b"\x00\x00"


class CollabConnectionError(Exception):
    """The connection could not be established, or was lost before the first sync."""


class CollabConnectionRefused(CollabConnectionError):
    """The server refused the Socket.IO connection (``connect_error``).

    ``message`` is the server's refusal message (e.g. ``"unauthorized"``), ``data`` the optional
    extra data of the refusal (``err.data`` in socket.io-client), ``None`` if there was none.
    """

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


def namespace_for(kind: str, doc_id: str | uuid.UUID) -> str:
    """The Socket.IO namespace of a document: ``/yjs|loop:<uuid>`` or ``/yjs|song:<uuid>``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return f"/yjs|{kind}:{doc_id}"


def decode_state_vector(state_vector: bytes) -> dict[int, int]:
    """A Yjs state vector (``doc.get_state()``) as ``{client_id: clock}``.

    Compare documents with this, never with the raw bytes: the encoding's entry order is not
    canonical, so two replicas in the same state can have different state-vector bytes.
    """
    decoder = Decoder(state_vector)
    return {decoder.read_var_uint(): decoder.read_var_uint() for _ in range(decoder.read_var_uint())}


@dataclass(slots=True)
class _Outgoing:
    generation: int
    event: str
    payload: Any
    callback: Callable[..., Any] | None = None


class _RemoteOrigin:
    """The origin of transactions that apply updates received from the server."""

    __slots__ = ("client",)

    def __init__(self, client: CollabClient) -> None:
        self.client = client

    def __repr__(self) -> str:
        return f"<remote origin of {self.client.namespace}>"


class CollabClient:
    """One connection to one collaborative document (loop or song).

    Args:
        base_url: The server origin, e.g. ``"http://127.0.0.1:8080"`` (no path: a path would
            become part of the Socket.IO namespace; use ``socketio_path`` for a prefix).
        kind: ``"loop"`` or ``"song"``.
        doc_id: The document's id.
        token: Our bearer access token; sent in the handshake ``auth`` as ``{"token": ...}``.
            Assign :attr:`token` to refresh it: every (re)connect reads the current value.
        share_token: A share-link token, sent as ``{"shareToken": ...}``.
        doc: The document to synchronize; a new empty ``Doc`` by default.
        reconnection: Reconnect automatically after a transport loss, like socket.io-client
            (a refusal or a server-initiated disconnect is final, as in the JS client).
        socketio_path: The Engine.IO endpoint (``socketio_path`` of python-socketio).
        awareness_timer: Run the awareness timer: renew our state every 15 s (so peers keep
            us) and drop peers not renewed for 30 s, as y-protocols does.

    Attributes:
        doc: The synchronized ``pycrdt.Doc``.
        awareness: The ``pycrdt.Awareness`` of ``doc``: our state (if any) and the peers'.
        synced: Set when the current connection finished the two-way sync handshake; cleared
            on disconnect.
        errors: The payloads of the server's ``error`` events, e.g.
            ``{"code": "read_only", "message": "..."}``, oldest first.
        presence: The last ``presence`` members list (``[{userId, displayName, role,
            connections}]``), ``None`` before the first one.
        role: The last role from ``role-changed``, ``None`` before the first one.
        shutdown_message: The message of the last ``server-shutdown`` event.
        disconnect_reason: Why the last connection ended (python-socketio's reason, e.g.
            ``"server disconnect"``, ``"client disconnect"``, ``"transport error"``).
        refusal: The last ``connect_error`` payload (also after failed reconnects).
        events: Every non-protocol event received, in order, as ``(name, payload)`` (the
            custom events above and any unknown one).
        protocol_errors: Exceptions raised while handling the server's messages (a bad update,
            bad awareness bytes, a payload of the wrong type, an ack that never came).
        remote_updates: Number of ``sync-update`` events received and applied.
        sent_updates: Number of ``sync-update`` events sent.
        connects: Number of successful (re)connections.
    """

    def __init__(
        self,
        base_url: str,
        kind: str,
        doc_id: str | uuid.UUID,
        *,
        token: str | None = None,
        share_token: str | None = None,
        doc: Doc | None = None,
        reconnection: bool = False,
        socketio_path: str = "socket.io",
        awareness_timer: bool = True,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.kind = kind
        self.doc_id = str(doc_id)
        self.namespace = namespace_for(kind, self.doc_id)
        self.token = token
        self.share_token = share_token
        self.socketio_path = socketio_path
        # Yjs client ids are uint32 (pycrdt picks up to 2^53, which the server refuses in
        # awareness updates: stock JS clients may not read it back).
        self.doc = doc if doc is not None else Doc(client_id=secrets.randbelow(2**32))
        # pycrdt's Awareness starts with a local state {}: we only announce ourselves once
        # set_awareness() gave a state (a null state is "not present").
        self.awareness = Awareness(self.doc)
        self.awareness.set_local_state(None)
        self._awareness_timer = awareness_timer
        self._awareness_task: asyncio.Task[None] | None = None

        self.synced = asyncio.Event()
        self.errors: list[dict[str, Any]] = []
        self.presence: list[dict[str, Any]] | None = None
        self.role: str | None = None
        self.shutdown_message: str | None = None
        self.disconnect_reason: str | None = None
        self.refusal: Any = None
        self.events: list[tuple[str, Any]] = []
        self.protocol_errors: list[BaseException] = []
        self.remote_updates = 0
        self.sent_updates = 0
        self.connects = 0

        self._remote_origin = _RemoteOrigin(self)
        self._applying_remote = False
        # A connection "generation": bumped on every disconnect, so that messages queued for
        # one connection are never sent on the next one (its handshake covers them).
        self._generation = 0
        self._live = False  # local edits are queued (the server has our state up to now)
        self._server_step1 = False
        self._own_step1 = False
        self._closing = False
        self._wakeup = asyncio.Event()
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None

        self.sio = socketio.AsyncClient(
            reconnection=reconnection, logger=False, engineio_logger=False, handle_sigint=False
        )
        ns = self.namespace
        self.sio.on("connect", self._on_connect, namespace=ns)
        self.sio.on("connect_error", self._on_connect_error, namespace=ns)
        self.sio.on("disconnect", self._on_disconnect, namespace=ns)
        self.sio.on(SYNC_STEP_1, self._on_sync_step_1, namespace=ns)
        self.sio.on(SYNC_UPDATE, self._on_sync_update, namespace=ns)
        self.sio.on(AWARENESS_UPDATE, self._on_awareness_update, namespace=ns)
        self.sio.on(ERROR, self._on_error, namespace=ns)
        self.sio.on(PRESENCE, self._on_presence, namespace=ns)
        self.sio.on(ROLE_CHANGED, self._on_role_changed, namespace=ns)
        self.sio.on(SERVER_SHUTDOWN, self._on_server_shutdown, namespace=ns)
        self.sio.on("*", self._on_other_event, namespace=ns)

        self._doc_subscription = self.doc.observe(self._on_doc_change)
        self._awareness_subscription = self.awareness.observe(self._on_awareness_change)

    # ------------------------------------------------------------------ public API

    @property
    def client_id(self) -> int:
        """Our Yjs client id (``doc.client_id``), the key of our awareness entry."""
        return int(self.doc.client_id)

    def state_vector(self) -> dict[int, int]:
        """Our document's state vector as ``{client_id: clock}`` (see :func:`decode_state_vector`);
        two replicas hold the same content when these are equal."""
        return decode_state_vector(self.doc.get_state())

    @property
    def connected(self) -> bool:
        """Whether the document's namespace is currently connected."""
        return self.namespace in self.sio.namespaces

    @property
    def remote_origin(self) -> object:
        """The transaction origin used when applying the server's updates."""
        return self._remote_origin

    def auth(self) -> dict[str, str]:
        """The handshake ``auth`` payload, computed at every (re)connect."""
        data: dict[str, str] = {}
        if self.token is not None:
            data["token"] = self.token
        if self.share_token is not None:
            data["shareToken"] = self.share_token
        return data

    async def connect(self, timeout: float = 10, *, wait_synced: bool = True) -> None:
        """Connect, then (by default) wait until the two-way sync handshake is done.

        Raises:
            CollabConnectionRefused: the server refused the connection (``connect_error``);
                carries the server's message.
            CollabConnectionError: no connection, or it ended before the first sync.
            TimeoutError: not synced within ``timeout`` seconds.
        """
        if self._closing:
            raise CollabConnectionError("client is closed")
        self._ensure_sender()
        self.refusal = None
        try:
            await self.sio.connect(
                self.base_url,
                auth=self.auth,
                transports=["websocket"],
                namespaces=[self.namespace],
                socketio_path=self.socketio_path,
                wait_timeout=timeout,
            )
        except socketio.exceptions.ConnectionError as exc:
            await self._stop_sender()
            await self._close_http_session()
            if isinstance(exc.__cause__, engineio.exceptions.ConnectionError):
                # No Engine.IO session at all (server down, HTTP error): not a refusal.
                detail = self.refusal if self.refusal is not None else exc
                raise CollabConnectionError(f"cannot connect to {self.base_url}: {detail}") from exc
            if self.refusal is not None:
                message, data = _refusal_parts(self.refusal)
                raise CollabConnectionRefused(message, data) from exc
            raise CollabConnectionError(str(exc)) from exc
        if self._awareness_timer and self._awareness_task is None:
            self._awareness_task = asyncio.create_task(self.awareness.start())
        if wait_synced:
            await self.wait_for(lambda: self.synced.is_set() or not self.connected, timeout)
            if not self.synced.is_set():
                raise CollabConnectionError(
                    f"disconnected before the first sync ({self.disconnect_reason}); "
                    f"server errors: {self.errors}"
                )

    async def close(self, *, flush_timeout: float = 2) -> None:
        """Send what is queued (up to ``flush_timeout`` s), disconnect and stop. Idempotent."""
        if self._closing:
            return
        if self.connected:
            with contextlib.suppress(TimeoutError):
                await self.flush(flush_timeout)
        self._closing = True
        self._notify()
        with contextlib.suppress(Exception):
            self.doc.unobserve(self._doc_subscription)
        with contextlib.suppress(Exception):
            self.awareness.unobserve(self._awareness_subscription)
        if self._awareness_task is not None:
            with contextlib.suppress(Exception):
                await self.awareness.stop()
            with contextlib.suppress(Exception):
                await self._awareness_task
            self._awareness_task = None
        try:
            await self.sio.shutdown()
        except Exception:  # a half-open transport must not make close() fail
            log.debug("error while disconnecting %s", self.namespace, exc_info=True)
        await self._stop_sender()
        await self._close_http_session()

    async def __aenter__(self) -> CollabClient:
        """Connects (unless already connected) and waits for the sync; closes on failure."""
        if self.connected:
            return self
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def set_awareness(self, state: dict[str, Any] | None) -> None:
        """Set (or with ``None`` remove) our awareness state and send it (queued, in order).

        Before connecting, the state is only stored; it is sent right after the handshake of
        every (re)connect. ``await flush()`` waits until it was handed to the transport.
        """
        self.awareness.set_local_state(state)  # the observer queues the awareness-update

    def remote_awareness(self) -> dict[int, dict[str, Any]]:
        """The peers' awareness states by client id (ours excluded)."""
        return {cid: s for cid, s in self.awareness.states.items() if cid != self.client_id}

    async def flush(self, timeout: float = 5) -> None:
        """Wait until every queued message was handed to the transport."""
        await asyncio.wait_for(self._outbox.join(), timeout)

    async def wait_for(self, predicate: Callable[[], T], timeout: float | None = 5) -> T:
        """Wait until ``predicate()`` is truthy and return its value.

        The predicate is re-checked after every incoming event, (dis)connect, document or
        awareness change, e.g. ``await c.wait_for(lambda: len(c.errors) > 0)``.

        Raises:
            TimeoutError: still false after ``timeout`` seconds (``None``: wait forever).
        """
        value = predicate()
        if value:
            return value
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._wakeup.wait()  # _notify() sets this event and replaces it
                    value = predicate()
                    if value:
                        return value
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout} s") from None

    async def emit_raw(self, event: str, *args: Any) -> None:
        """Send an arbitrary event with arbitrary arguments (after what is queued).

        For tests that must send bad input: ``bytes`` go as binary attachments, ``str`` as
        text, e.g. ``await c.emit_raw("sync-update", b"\\xff\\x00garbage")``.
        """
        with contextlib.suppress(TimeoutError):
            await self.flush(5)
        await self.sio.emit(event, tuple(args), namespace=self.namespace)

    async def call_raw(self, event: str, *args: Any, timeout: float = 5) -> Any:
        """Like :meth:`emit_raw`, but request an ack and return it (one argument: that value;
        several: a tuple). Raises ``TimeoutError`` if no ack comes."""
        with contextlib.suppress(TimeoutError):
            await self.flush(5)
        try:
            return await self.sio.call(event, tuple(args), namespace=self.namespace, timeout=timeout)
        except socketio.exceptions.TimeoutError as exc:
            raise TimeoutError(f"no ack for {event!r} within {timeout} s") from exc

    async def sync(self, timeout: float = 5) -> None:
        """An extra ``sync-step-1`` round trip: afterwards the doc has all the server had when it
        answered (useful before asserting on content)."""
        update = await self.call_raw(SYNC_STEP_1, self.doc.get_state(), timeout=timeout)
        self._apply_remote(update)

    def apply_remote_update(self, update: bytes) -> None:
        """Apply an update as if it came from the server (it is not sent back)."""
        self._apply_remote(update)

    # ------------------------------------------------------------------ internals

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    def _record(self, exc: BaseException, what: str) -> None:
        log.debug("%s: %s", what, exc)
        self.protocol_errors.append(exc)
        self._notify()

    def _ensure_sender(self) -> None:
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_loop(), name=f"collab-sender {self.namespace}")

    async def _stop_sender(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        self._drop_queued()

    async def _close_http_session(self) -> None:
        # python-engineio leaves its aiohttp session open when a connection attempt fails at
        # the transport level (server down) or a reconnect loop is aborted.
        http = getattr(self.sio.eio, "http", None)
        if http is not None and not http.closed:
            with contextlib.suppress(Exception):
                await http.close()

    def _queue(self, event: str, payload: Any, callback: Callable[..., Any] | None = None) -> None:
        self._outbox.put_nowait(_Outgoing(self._generation, event, payload, callback))

    def _drop_queued(self) -> None:
        while True:
            try:
                self._outbox.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._outbox.task_done()

    async def _send_loop(self) -> None:
        while True:
            item = await self._outbox.get()
            try:
                # Queued before the namespace's CONNECT arrived (between the server's
                # sync-step-1 and CONNECT): wait for it, unless that connection is gone.
                generation = item.generation
                if not self.connected:
                    await self.wait_for(functools.partial(self._can_send_or_drop, generation), None)
                if generation != self._generation or self._closing:
                    continue
                await self.sio.emit(
                    item.event, item.payload, namespace=self.namespace, callback=item.callback
                )
                if item.event == SYNC_UPDATE:
                    self.sent_updates += 1
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # BadNamespaceError after a disconnect, transport errors
                log.debug("could not send %s: %s", item.event, exc)
            finally:
                self._outbox.task_done()

    def _can_send_or_drop(self, generation: int) -> bool:
        return self.connected or generation != self._generation or self._closing

    def _apply_remote(self, update: Any) -> bool:
        if not isinstance(update, bytes):
            self._record(TypeError(f"expected a binary update, got {type(update).__name__}"), "update")
            return False
        self._applying_remote = True
        try:
            with self.doc.transaction(origin=self._remote_origin):
                self.doc.apply_update(update)
        except Exception as exc:
            self._record(exc, "could not apply the server's update")
            return False
        finally:
            self._applying_remote = False
        self._notify()
        return True

    def _check_synced(self) -> None:
        if self._server_step1 and self._own_step1 and not self.synced.is_set():
            self.synced.set()
        self._notify()

    # Document / awareness observers (synchronous, called by pycrdt).

    def _on_doc_change(self, event: TransactionEvent) -> None:
        if not self._applying_remote and self._live:
            self._queue(SYNC_UPDATE, event.update)
        self._notify()

    def _on_awareness_change(self, topic: str, change: tuple[dict[str, Any], Any]) -> None:
        changes, _origin = change
        if topic == "update":
            ids = [*changes["added"], *changes["updated"], *changes["removed"]]
            # Only our own entry is ever sent (a peer re-asserting its state is its business);
            # this includes re-asserting ours when a peer announced our removal.
            if self.client_id in ids and self._live:
                self._queue(AWARENESS_UPDATE, self.awareness.encode_awareness_update([self.client_id]))
        self._notify()

    # Socket.IO handlers. They apply incoming data before any await, so incoming messages
    # are applied in the order they arrived.

    async def _on_connect(self) -> None:
        self.connects += 1
        self.disconnect_reason = None
        self._live = True
        generation = self._generation
        self._own_step1 = False

        def on_ack(*args: Any) -> None:
            if generation != self._generation:
                return
            if len(args) != 1:
                self._record(ValueError(f"sync-step-1 ack with {len(args)} arguments"), "ack")
            elif self._apply_remote(args[0]):
                self._own_step1 = True
            self._check_synced()

        self._queue(SYNC_STEP_1, self.doc.get_state(), on_ack)
        if self.awareness.get_local_state() is not None:
            self._queue(AWARENESS_UPDATE, self.awareness.encode_awareness_update([self.client_id]))
        self._notify()

    def _on_connect_error(self, data: Any = None, *_: Any) -> None:
        self.refusal = data
        self.events.append(("connect_error", data))
        self._notify()

    def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnect_reason = str(reason) if reason is not None else "unknown"
        self._generation += 1
        self._live = False
        self._server_step1 = False
        self._own_step1 = False
        self.synced.clear()
        self._drop_queued()
        # Like the JS provider: peers are unknown while we are offline.
        peers = list(self.remote_awareness())
        if peers:
            self.awareness.remove_awareness_states(peers, self._remote_origin)
        self._notify()

    def _on_sync_step_1(self, state_vector: Any = None, *_: Any) -> bytes:
        """The server's state vector: answer (the ack) with what it lacks."""
        try:
            if not isinstance(state_vector, bytes):
                raise TypeError(f"expected a binary state vector, got {type(state_vector).__name__}")
            reply = self.doc.get_update(state_vector)
        except Exception as exc:
            self._record(exc, "bad sync-step-1 from the server")
            reply = EMPTY_UPDATE
        # From now on, local edits are not covered by this reply: send them as updates.
        self._live = True
        self._server_step1 = True
        self._check_synced()
        return reply

    def _on_sync_update(self, update: Any = None, *_: Any) -> None:
        if self._apply_remote(update):
            self.remote_updates += 1
            self._notify()

    def _on_awareness_update(self, update: Any = None, *_: Any) -> None:
        try:
            if not isinstance(update, bytes):
                raise TypeError(f"expected a binary awareness update, got {type(update).__name__}")
            self.awareness.apply_awareness_update(update, self._remote_origin)
        except Exception as exc:
            self._record(exc, "bad awareness-update from the server")
        self._notify()

    def _on_error(self, payload: Any = None, *_: Any) -> None:
        self.errors.append(payload if isinstance(payload, dict) else {"code": None, "message": payload})
        self.events.append((ERROR, payload))
        self._notify()

    def _on_presence(self, payload: Any = None, *_: Any) -> None:
        if isinstance(payload, dict) and isinstance(payload.get("members"), list):
            self.presence = payload["members"]
        else:
            self._record(ValueError(f"bad presence payload: {payload!r:.200}"), "presence")
        self.events.append((PRESENCE, payload))
        self._notify()

    def _on_role_changed(self, payload: Any = None, *_: Any) -> None:
        if isinstance(payload, dict):
            self.role = payload.get("role")
        self.events.append((ROLE_CHANGED, payload))
        self._notify()

    def _on_server_shutdown(self, payload: Any = None, *_: Any) -> None:
        self.shutdown_message = payload.get("message") if isinstance(payload, dict) else str(payload)
        self.events.append((SERVER_SHUTDOWN, payload))
        self._notify()

    def _on_other_event(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if len(args) == 1 else args))
        self._notify()


def _refusal_parts(refusal: Any) -> tuple[str, Any]:
    """``(message, data)`` of a ``connect_error`` payload (``{message, data?}`` or a string)."""
    if isinstance(refusal, dict):
        return str(refusal.get("message", refusal)), refusal.get("data")
    return str(refusal), None
