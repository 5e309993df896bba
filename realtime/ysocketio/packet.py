"""The Socket.IO packet class of our server (python-socketio's public ``serializer=`` option):
bounded binary packets, and the text part of binary events decoded once.

Bounds. python-socketio appends every frame that follows a binary packet's text part to that
packet until it has as many attachments as the text announced (up to 9,999,999,999), so one
header could make the server keep every later frame of the connection. Here a packet may
announce at most :data:`MAX_ATTACHMENTS` attachments, and its text and attachments together
may hold at most ``max_bytes``; past either bound :class:`PacketRefused` is raised, and the
read loop (``realtime/ysocketio/engineio_adapter.py``) drops the connection with its reason.

Cache. Every Yjs message is a Socket.IO binary event: a text part, then the update as a binary
attachment. The text part (packet type, attachment count, namespace, and the event name with
a placeholder as JSON) is the same for every message of one event in one namespace, so it is
decoded once per distinct text here instead of once per message (string slicing and a JSON
parse, ~5 % of the server's CPU under the stock client's load). Only texts of honest size and
shape are kept (at most :data:`MAX_CACHED_HEADER_CHARS` characters, an event name and one
placeholder, no ack id), so the cache holds at most :data:`MAX_CACHED_HEADERS` small entries
(under 5 MiB at worst), whatever clients send. The read loop hands python-socketio nothing but
a namespace CONNECT until the connection has a namespace, so nothing reaches this cache (or
any decoder) before a client is authorized. Every other packet is decoded as python-socketio
decodes it.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from socketio import packet as sio_packet

from realtime.ysocketio import packet_json

# Every event of the protocol (y-socket.io) carries one binary argument, and so does every
# acknowledgement that carries one (the sync-step-1 reply). A few more are let through so that
# a client emitting several by mistake gets the event's error (``malformed_update``) instead
# of a dropped connection; the packet's bytes are bounded all the same (``max_bytes``).
MAX_ATTACHMENTS: Final = 4
# Texts of binary events whose decoding is kept: the namespaces and events in use. An honest
# text is ~90 characters (a 56-character namespace, an event name, one placeholder).
MAX_CACHED_HEADERS: Final = 4096
MAX_CACHED_HEADER_CHARS: Final = 256
# What one packet's text part may add to the bytes of its attachment (``packet_class``): an
# honest text is tens of bytes.
MAX_TEXT_BYTES: Final = 4096
_BINARY_TYPES: Final = (str(sio_packet.BINARY_EVENT), str(sio_packet.BINARY_ACK))
_PLACEHOLDER: Final = {"_placeholder": True, "num": 0}

Decoded = tuple[int, str | None, int | None, Any, int]


class PacketRefused(ValueError):
    """A packet past a bound of this module; ``reason`` says which (the connection is dropped)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BoundedPacket(sio_packet.Packet):  # type: ignore[misc]
    """python-socketio's ``Packet`` with bounded binary packets and a header cache.

    Use :func:`packet_class` for the class with a server's byte bound. Sharing cached decoded
    data is safe: until its attachments arrive a binary packet's data is only a template, and
    ``add_attachment`` builds new lists and dicts from it (``reconstruct_binary``) for the
    handler.
    """

    json = packet_json  # also what the server is given; the cache decodes with it too
    max_bytes: int = 0  # text + attachments of one packet; set by packet_class()
    size: int = 0  # bytes of this packet so far

    def decode(self, encoded_packet: Any) -> int:
        if type(encoded_packet) is str and encoded_packet[:1] in _BINARY_TYPES:
            decoded = None
            if len(encoded_packet) <= MAX_CACHED_HEADER_CHARS:
                decoded = _cached_header(encoded_packet)
            if decoded is None:
                decoded = _decode_binary_text(encoded_packet)
            self.packet_type, self.namespace, self.id, self.data, attachments = decoded
            if attachments > MAX_ATTACHMENTS:
                raise PacketRefused(
                    f"a Socket.IO packet may carry at most {MAX_ATTACHMENTS} binary attachment"
                    f"{'s' if MAX_ATTACHMENTS != 1 else ''}, this one announced {attachments}"
                )
            self.size = len(encoded_packet)
            return attachments
        count: int = super().decode(encoded_packet)
        return count

    def add_attachment(self, attachment: Any) -> bool:
        size = self.size + len(attachment)
        if size > self.max_bytes:
            raise PacketRefused(f"a Socket.IO packet may hold at most {self.max_bytes} bytes")
        self.size = size
        done: bool = super().add_attachment(attachment)
        return done


def packet_class(*, max_bytes: int) -> type[BoundedPacket]:
    """The packet class for a server whose packets hold at most ``max_bytes`` (text and
    attachments together)."""
    return type("BoundedPacket", (BoundedPacket,), {"max_bytes": max_bytes})


def _decode_binary_text(text: str) -> Decoded:
    scratch = BoundedPacket.__new__(BoundedPacket)  # decoded with its json module
    scratch.id = None
    attachments = sio_packet.Packet.decode(scratch, text) or 0
    return scratch.packet_type, scratch.namespace, scratch.id, scratch.data, attachments


@functools.lru_cache(maxsize=MAX_CACHED_HEADERS)
def _cached_header(text: str) -> Decoded | None:
    """The decoded text of an honest binary event (None for anything else, which the caller
    decodes uncached: its decoded data, which may be bigger, is never kept)."""
    decoded = _decode_binary_text(text)
    packet_type, _, ack_id, data, attachments = decoded
    honest = (
        packet_type == sio_packet.BINARY_EVENT
        and ack_id is None
        and attachments == 1
        and type(data) is list
        and len(data) == 2
        and type(data[0]) is str
        and data[1] == _PLACEHOLDER
    )
    return decoded if honest else None
