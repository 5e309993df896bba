"""Our packet class decodes every packet as python-socketio's own ``Packet`` does, within its
bounds (attachment count, bytes per packet), and its header cache keeps only honest texts."""

from __future__ import annotations

import tracemalloc

import pytest
from socketio import packet as sio_packet

from realtime.ysocketio import packet as socketio_packet
from realtime.ysocketio import packet_json
from realtime.ysocketio.packet import MAX_ATTACHMENTS, PacketRefused

OurPacket = socketio_packet.packet_class(max_bytes=64 * 1024)


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
        ours, stock = OurPacket(encoded_packet=text), StockPacket(encoded_packet=text)
        assert fields(ours) == fields(stock)
        for i in range(stock.attachment_count):
            assert ours.add_attachment(bytes([i])) == stock.add_attachment(bytes([i]))
        assert fields(ours) == fields(stock)


def test_packets_from_one_text_share_nothing_a_handler_can_change() -> None:
    text = TEXTS[5]
    first = OurPacket(encoded_packet=text)
    assert first.add_attachment(b"one")
    first.data[2]["nested"].append("changed by a handler")
    first.data[0] = "renamed"
    second = OurPacket(encoded_packet=text)
    assert second.add_attachment(b"two")
    assert second.data == ["sync-update", b"two", {"nested": [1, {"deep": True}]}]


def test_the_integer_bound_still_applies() -> None:
    text = '51-/yjs|loop:abc,["e",' + "1" * (packet_json.MAX_INT_DIGITS + 1) + "]"
    with pytest.raises(ValueError, match="too large"):
        StockPacket(encoded_packet=text)
    with pytest.raises(ValueError, match="too large"):
        OurPacket(encoded_packet=text)


def test_a_packet_announcing_more_attachments_than_the_protocol_uses_is_refused() -> None:
    """python-socketio would keep every later frame for a header announcing 9,999,999,999."""
    for count in (MAX_ATTACHMENTS + 1, 9_999_999_999):
        text = f'5{count}-/yjs|loop:abc,["sync-update",{{"_placeholder":true,"num":0}}]'
        with pytest.raises(PacketRefused, match=f"at most {MAX_ATTACHMENTS} binary attachment"):
            OurPacket(encoded_packet=text)
        with pytest.raises(PacketRefused):
            OurPacket(encoded_packet=text.replace("5", "6", 1))  # an acknowledgement too


def test_a_packet_holds_at_most_max_bytes_text_and_attachments_together() -> None:
    small = socketio_packet.packet_class(max_bytes=1000)
    text = '51-/yjs|loop:abc,["sync-update",{"_placeholder":true,"num":0}]'
    assert small(encoded_packet=text).add_attachment(b"x" * (1000 - len(text)))
    with pytest.raises(PacketRefused, match="at most 1000 bytes"):
        small(encoded_packet=text).add_attachment(b"x" * (1001 - len(text)))
    padded = '51-/yjs|loop:abc,["sync-update",{"_placeholder":true,"num":0},"' + "p" * 900 + '"]'
    with pytest.raises(PacketRefused):
        small(encoded_packet=padded).add_attachment(b"x" * 200)


def test_only_short_honest_headers_are_cached() -> None:
    socketio_packet._cached_header.cache_clear()
    honest = '51-/yjs|loop:abc,["sync-update",{"_placeholder":true,"num":0}]'
    with_ack = '51-/yjs|loop:abc,7["sync-step-1",{"_placeholder":true,"num":0}]'
    padded = '51-/yjs|loop:abc,["e",{"_placeholder":true,"num":0},[[],[],[],[]]]'
    long = (
        '51-/yjs|loop:abc,["'
        + "e" * socketio_packet.MAX_CACHED_HEADER_CHARS
        + '",{"_placeholder":true,"num":0}]'
    )
    for text in (honest, with_ack, padded, long):
        OurPacket(encoded_packet=text)
    assert socketio_packet._cached_header(honest) is not None
    assert socketio_packet._cached_header(with_ack) is None  # kept as "no", without its data
    assert socketio_packet._cached_header(padded) is None
    info = socketio_packet._cached_header.cache_info()
    assert info.currsize == 3  # the long text never reached the cache
    socketio_packet._cached_header.cache_clear()


def test_the_header_cache_is_bounded_in_bytes_whatever_clients_send() -> None:
    """Filled past its size with the largest texts it keeps, it holds a few MiB."""
    socketio_packet._cached_header.cache_clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(socketio_packet.MAX_CACHED_HEADERS + 1000):
            namespace = "/" + f"n{i:06d}" * 17  # as long as the text allows
            event = "e" * (socketio_packet.MAX_CACHED_HEADER_CHARS - len(namespace) - 50)
            OurPacket(encoded_packet=f'51-{namespace},["{event}",{{"_placeholder":true,"num":0}}]')
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert socketio_packet._cached_header.cache_info().currsize == socketio_packet.MAX_CACHED_HEADERS
    assert held < 5 * 1024 * 1024, held
    socketio_packet._cached_header.cache_clear()
