"""The one place that reaches into python-socketio / python-engineio internals.

The fan-out encodes a packet once and puts it straight on each recipient's Engine.IO send
queue (``AsyncSocket.queue``, drained by the socket's writer task) instead of calling
``AsyncServer.emit`` per recipient, which creates a task and re-encodes per socket. That
needs three things neither library documents: the manager's ``eio_sid_from_sid``, the
server's ``sockets`` map and each socket's ``queue``. The versions they were checked against
are pinned exactly in ``pyproject.toml`` (:data:`CHECKED_VERSIONS`); :func:`self_check` runs
at start-up and ``tests/unit/test_engineio_adapter.py`` fails loudly when an upgrade moves them.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable
from importlib.metadata import version
from typing import Any, Final

import engineio
import socketio
from engineio import packet as eio_packet
from socketio import packet as sio_packet

# distribution -> the exact version this module was written against (pinned in pyproject.toml).
CHECKED_VERSIONS: Final = {"python-socketio": "5.18.1", "python-engineio": "4.15.1"}


class EngineIOAdapterError(RuntimeError):
    """The installed python-socketio / python-engineio no longer look like what this adapter uses."""


def self_check(sio: socketio.AsyncServer) -> None:
    """Raise :class:`EngineIOAdapterError` unless the internals used below are where we expect.

    Checks the installed versions against :data:`CHECKED_VERSIONS` and the shape of the
    objects (attributes, methods, queue type), so an upgrade fails at start-up, not under load.
    """
    installed = {name: version(name) for name in CHECKED_VERSIONS}
    if installed != CHECKED_VERSIONS:
        raise EngineIOAdapterError(
            f"realtime/engineio_adapter.py was checked against {CHECKED_VERSIONS}, found {installed}: "
            "re-check the internals it uses and update CHECKED_VERSIONS and the pins"
        )
    problems = []
    if not callable(getattr(sio.manager, "eio_sid_from_sid", None)):
        problems.append("socketio manager has no eio_sid_from_sid()")
    if not isinstance(getattr(sio.eio, "sockets", None), dict):
        problems.append("engineio server has no sockets dict")
    socket_init = inspect.getsource(engineio.base_socket.BaseSocket.__init__)
    if "self.queue = " not in socket_init:
        problems.append("engineio BaseSocket.__init__ no longer creates self.queue")
    writer = inspect.getsource(engineio.async_socket.AsyncSocket.poll)
    if "self.queue.get" not in writer:
        problems.append("engineio AsyncSocket.poll no longer drains self.queue")
    if problems:
        raise EngineIOAdapterError("; ".join(problems))


def encode_event(sio: socketio.AsyncServer, namespace: str, event: str, data: Any) -> list[eio_packet.Packet]:
    """One Socket.IO EVENT as the Engine.IO packets that carry it (binary data: attachments)."""
    pkt = sio.packet_class(sio_packet.EVENT, namespace=namespace, data=[event, data])
    encoded = pkt.encode()
    if not isinstance(encoded, list):
        encoded = [encoded]
    return [eio_packet.Packet(eio_packet.MESSAGE, part) for part in encoded]


def engineio_sid(sio: socketio.AsyncServer, sid: str, namespace: str) -> str | None:
    """The Engine.IO session (the transport) under a Socket.IO session of ``namespace``."""
    eio_sid: str | None = sio.manager.eio_sid_from_sid(sid, namespace)
    return eio_sid


def queue_packets(
    sio: socketio.AsyncServer, eio_sids: Iterable[str], packets: list[eio_packet.Packet]
) -> int:
    """Put the same encoded packets on each open transport's send queue; returns how many
    transports got them. Never blocks: the queues are unbounded and each socket's writer
    task drains its own."""
    sockets = sio.eio.sockets
    delivered = 0
    for eio_sid in eio_sids:
        socket = sockets.get(eio_sid)
        if socket is None or socket.closed:
            continue
        queue: asyncio.Queue[eio_packet.Packet | None] = socket.queue
        for pkt in packets:
            queue.put_nowait(pkt)
        delivered += 1
    return delivered
