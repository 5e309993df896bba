"""``HeaderCachingPacket`` decodes every packet as python-socketio's own ``Packet`` does."""

from __future__ import annotations

import pytest
from socketio import packet as sio_packet

from realtime import packet_json
from realtime.socketio_packet import HeaderCachingPacket


class StockPacket(sio_packet.Packet):  # type: ignore[misc]
    json = packet_json  # as the server sets it on its packet class


TEXTS = [
    '51-/yjs|loop:abc,["sync-update",{"_placeholder":true,"num":0}]',
    '51-/yjs|song:def,["awareness-update",{"_placeholder":true,"num":0}]',
    '52-/yjs|loop:abc,["two",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
    '51-/yjs|loop:abc,7["sync-step-1",{"_placeholder":true,"num":0}]',  # with an ack id
    '61-/yjs|loop:abc,12[{"_placeholder":true,"num":0}]',  # a binary acknowledgement
    '51-["sync-update",{"_placeholder":true,"num":0},{"nested":[1,{"deep":true}]}]',  # namespace /
    '2/yjs|loop:abc,["comment",{"text":"hi"}]',  # not binary: decoded as usual
    '0/yjs|loop:abc,{"token":"t"}',
]


def fields(pkt: sio_packet.Packet) -> tuple[object, ...]:
    return pkt.packet_type, pkt.namespace, pkt.id, pkt.data, pkt.attachment_count, pkt.attachments


@pytest.mark.parametrize("text", TEXTS)
def test_decodes_as_python_socketio_does(text: str) -> None:
    for _ in range(2):  # decoded, then from the cache
        ours, stock = HeaderCachingPacket(encoded_packet=text), StockPacket(encoded_packet=text)
        assert fields(ours) == fields(stock)
        for i in range(stock.attachment_count):
            assert ours.add_attachment(bytes([i])) == stock.add_attachment(bytes([i]))
        assert fields(ours) == fields(stock)


def test_packets_from_one_text_share_nothing_a_handler_can_change() -> None:
    text = TEXTS[5]
    first = HeaderCachingPacket(encoded_packet=text)
    assert first.add_attachment(b"one")
    first.data[2]["nested"].append("changed by a handler")
    first.data[0] = "renamed"
    second = HeaderCachingPacket(encoded_packet=text)
    assert second.add_attachment(b"two")
    assert second.data == ["sync-update", b"two", {"nested": [1, {"deep": True}]}]


def test_the_integer_bound_still_applies() -> None:
    text = '51-/yjs|loop:abc,["e",' + "1" * (packet_json.MAX_INT_DIGITS + 1) + "]"
    with pytest.raises(ValueError, match="too large"):
        StockPacket(encoded_packet=text)
    with pytest.raises(ValueError, match="too large"):
        HeaderCachingPacket(encoded_packet=text)
