"""The Socket.IO packet class of our server (python-socketio's public ``serializer=`` option).

Every Yjs message is a Socket.IO binary event: a text part, then the update as a binary
attachment. The text part (packet type, attachment count, namespace, and the event name with
a placeholder as JSON) is the same for every message of one event in one namespace, so it is
decoded once per distinct text here instead of once per message (string slicing and a JSON
parse, ~5 % of the server's CPU under the stock client's load). Every other packet is decoded
as python-socketio decodes it.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from socketio import packet as sio_packet

# Texts of binary packets whose decoding is kept: the namespaces and events in use (an
# acknowledgement's text holds its id, so those mostly miss, as before).
MAX_CACHED_HEADERS: Final = 4096
_BINARY_TYPES: Final = (str(sio_packet.BINARY_EVENT), str(sio_packet.BINARY_ACK))


class HeaderCachingPacket(sio_packet.Packet):  # type: ignore[misc]
    """python-socketio's ``Packet``, decoding the text part of a binary packet once per text.

    Sharing the decoded data is safe: until its attachments arrive a binary packet's data is
    only a template, and ``add_attachment`` builds new lists and dicts from it
    (``reconstruct_binary``) for the handler.
    """

    def decode(self, encoded_packet: Any) -> int:
        if type(encoded_packet) is str and encoded_packet[:1] in _BINARY_TYPES:
            self.packet_type, self.namespace, self.id, self.data, attachments = _decode_binary_text(
                encoded_packet
            )
            return attachments
        count: int = super().decode(encoded_packet)
        return count


@functools.lru_cache(maxsize=MAX_CACHED_HEADERS)
def _decode_binary_text(text: str) -> tuple[int, str | None, int | None, Any, int]:
    scratch = HeaderCachingPacket.__new__(HeaderCachingPacket)  # decoded with its json module
    scratch.id = None
    attachments = sio_packet.Packet.decode(scratch, text) or 0
    return scratch.packet_type, scratch.namespace, scratch.id, scratch.data, attachments
