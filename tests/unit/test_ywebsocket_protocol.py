"""The y-websocket wire's framing and close codes, without a server: every refusal has its
close code (docs/y-websocket.md says which), and frames are read with bounded varints."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from pycrdt import YSyncMessageType, write_message, write_var_uint

from realtime.errors import ErrorCode
from realtime.handshake import RefusalKind
from realtime.ywebsocket import protocol
from realtime.ywebsocket.close_codes import FOR_ERROR, FOR_REFUSAL, MEANINGS, CloseCode
from realtime.ywebsocket.protocol import MalformedMessage, MessageType
from realtime.ywebsocket.server import FRAME_OVERHEAD, PATH

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "y-websocket.md"


def test_every_error_code_closes_with_a_code() -> None:
    # The server closes for any ErrorCode a room, the service or the wire raises; one missing
    # here closed with 1000 (a KeyError in the handler), which the stock client answers by
    # reconnecting and resending the refused edit, forever. No code is exempt.
    assert set(FOR_ERROR) == set(ErrorCode)
    assert set(FOR_REFUSAL) == set(RefusalKind)
    assert set(MEANINGS) == set(CloseCode)


def test_refused_updates_stop_the_stock_client() -> None:
    # Resending a refused update cannot succeed: its code is one after which the stock client
    # does not reconnect (4400-4499).
    for code in (
        ErrorCode.POSITION_OUT_OF_RANGE,
        ErrorCode.CONTENT_TOO_LARGE,
        ErrorCode.MALFORMED_UPDATE,
        ErrorCode.MISSING_DEPENDENCIES,
    ):
        assert FOR_ERROR[code] is CloseCode.REFUSED_UPDATE


def test_the_close_code_table_of_the_docs_lists_every_code_and_reason() -> None:
    rows = {
        int(m[1]): m[2] for m in re.finditer(r"^\| (\d{4}) \|(.*)$", DOC.read_text(encoding="utf-8"), re.M)
    }
    assert set(rows) == {int(code) for code in CloseCode}
    for error, code in FOR_ERROR.items():
        if code is CloseCode.REFUSED_UPDATE:  # its row names each reason it is closed for
            assert f"`{error.value}`" in rows[code], error


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            protocol.sync_message(YSyncMessageType.SYNC_STEP1, b"\x00"),
            (MessageType.SYNC, b"\x00", YSyncMessageType.SYNC_STEP1),
        ),
        (
            protocol.sync_message(YSyncMessageType.SYNC_UPDATE, b"\x00\x00"),
            (MessageType.SYNC, b"\x00\x00", YSyncMessageType.SYNC_UPDATE),
        ),
        (protocol.awareness_message(b"\x01\x02"), (MessageType.AWARENESS, b"\x01\x02", None)),
        (protocol.auth_message('{"token": "t"}'), (MessageType.AUTH, b'{"token": "t"}', None)),
        (bytes([MessageType.QUERY_AWARENESS]), (MessageType.QUERY_AWARENESS, b"", None)),
    ],
)
def test_parse_reads_each_message(frame: bytes, expected: tuple[object, ...]) -> None:
    message = protocol.parse(frame)
    assert (message.type, message.payload, message.sync_type) == expected


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        bytes([9]),  # no such message type
        bytes([0, 7]) + write_message(b"\x00"),  # no such sync type
        bytes([0, 0, 0x80]),  # a truncated length
        bytes([1]) + write_var_uint(1000),  # a payload longer than the frame
        protocol.awareness_message(b"\x01") + b"\x00",  # a byte past the payload
        bytes([MessageType.QUERY_AWARENESS, 0]),
        bytes([1]) + write_var_uint(2**53),  # a length no JavaScript client reads
        b"\xff" * 20,  # a type that never ends
    ],
)
def test_parse_refuses_what_is_not_one_message(frame: bytes) -> None:
    with pytest.raises(MalformedMessage):
        protocol.parse(frame)


@pytest.mark.parametrize("prefix", [b"", bytes([0]), bytes([1]), bytes([2])])
def test_a_full_frame_of_0xff_is_refused_at_once(prefix: bytes) -> None:
    # pycrdt's Decoder reads such a varint in quadratic time (seconds for one frame, on the
    # event loop, before authentication); the bounded reader stops after 8 bytes. The bound
    # is loose on purpose (a busy CI machine): the unbounded read took ~7 s.
    frame = prefix + b"\xff" * (256 * 1024 + FRAME_OVERHEAD - 1 - len(prefix))
    start = time.perf_counter()
    with pytest.raises(MalformedMessage, match="out of range"):
        protocol.parse(frame)
    assert time.perf_counter() - start < 1.0


def _nginx_location(prefix: str) -> set[str]:
    """The directives of ``location <prefix>`` in the shipped nginx.conf, one string each."""
    conf = (ROOT / "nginx.conf").read_text(encoding="utf-8")
    block = re.search(rf"location {re.escape(prefix)} \{{(.*?)\}}", conf, re.S)
    assert block is not None, f"no location {prefix} in nginx.conf"
    lines = (re.sub(r"#.*", "", line).strip() for line in block[1].splitlines())
    return {" ".join(line.rstrip(";").split()) for line in lines if line}


def test_nginx_proxies_the_endpoint_as_a_websocket_like_socketio() -> None:
    # Without Upgrade forwarded, nginx passes the stock client's handshake on as a plain GET
    # (no WebSocket through the proxy); with its default 60 s read timeout, idle sockets drop.
    ws = _nginx_location(PATH.split("{")[0])
    assert ws == _nginx_location("/socket.io/")
    assert {
        "proxy_set_header Upgrade $http_upgrade",
        "proxy_set_header Connection $connection_upgrade",
        "proxy_read_timeout 1h",
    } <= ws
