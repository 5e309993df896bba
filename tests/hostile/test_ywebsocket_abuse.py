"""Hostile clients on the raw y-websocket wire, against a real ``musicplayground serve``
process on SQLite and Postgres whose memory is read from /proc: oversized frames, bogus
state vectors, NaN in awareness, floods, and a socket that stops reading. Each is closed with
its code, the server's memory stays bounded, and well-behaved clients keep working."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from pycrdt import YSyncMessageType, write_message, write_var_uint

from realtime.ywebsocket import protocol
from realtime.ywebsocket.close_codes import CloseCode
from realtime.ywebsocket.server import FRAME_OVERHEAD
from tests.helpers import eventually
from tests.hostile.test_socket_bounds import (  # noqa: F401  (fixtures)
    MAX_RSS_GROWTH,
    MiB,
    account_and_loop,
    big_loop,
    fresh_address,
    growth,
    http,
    served,
    state_vector,
    still_serves,
)
from tests.hostile.wire import rss_bytes
from tests.server_process import ServerProcess
from tests.ywebsocket_client import YwsClient

pytestmark = pytest.mark.timeout(120)
MAX_UPDATE_BYTES = 256 * 1024  # RT_MAX_UPDATE_BYTES of the server under test (the default)


async def raw(
    session: aiohttp.ClientSession, url: str, loop_id: str, token: str, address: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(
        f"{url}/ws/loop:{loop_id}?token={token}", headers={"X-Forwarded-For": address}, max_msg_size=0
    )
    return ws


async def closed_with(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10) -> tuple[int | None, str]:
    """Read until the server closes; its close code and reason."""
    while True:
        message = await ws.receive(timeout=timeout)
        if message.type is aiohttp.WSMsgType.CLOSE:
            return ws.close_code, str(message.extra or "")
        if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return ws.close_code, ""


async def test_oversized_frames_are_closed_without_being_held(
    served: ServerProcess,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
) -> None:
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    pid = served.proc.pid  # type: ignore[union-attr]
    # Just over the bound: read, refused, closed with 1009.
    ws = await raw(http, served.url, loop_id, token, address)
    await ws.send_bytes(
        protocol.sync_message(YSyncMessageType.SYNC_UPDATE, b"\x00" * (MAX_UPDATE_BYTES + 1024))
    )
    assert (await closed_with(ws))[0] == CloseCode.TOO_BIG
    # Far over it, from four sockets at once: each is cut off after the bound (1009, or a reset
    # when the server discards bytes still in flight), and none is held in memory.
    before = rss_bytes(pid)
    sockets = [await raw(http, served.url, loop_id, token, address) for _ in range(4)]
    update = b"\x00" * (32 * MiB)
    for ws in sockets:
        try:
            await ws.send_bytes(protocol.sync_message(YSyncMessageType.SYNC_UPDATE, update))
        except (ConnectionError, aiohttp.ClientError):
            pass  # the server closed before it had all of it
    for ws in sockets:
        code, _ = await closed_with(ws)
        assert code in (CloseCode.TOO_BIG, aiohttp.WSCloseCode.ABNORMAL_CLOSURE)
    assert growth(before, pid) < MAX_RSS_GROWTH, f"RSS grew {growth(before, pid) / MiB:.0f} MiB"
    await still_serves(served.url, token, loop_id)


async def test_bogus_state_vectors_and_junk_messages_close_4400(
    served: ServerProcess,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
) -> None:
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    junk = [
        protocol.sync_message(YSyncMessageType.SYNC_STEP1, b"\xff" * 12),  # a varint that never ends
        protocol.sync_message(YSyncMessageType.SYNC_STEP1, b"\x05\x01"),  # five clients, one byte
        bytes([0, 7]) + write_message(b"\x00"),  # no such sync type
        bytes([9]),  # no such message type
        bytes([0, 0, 0x80]),  # a truncated length
        bytes([1]) + write_var_uint(1000),  # a payload longer than the frame
    ]
    for frame in junk:
        ws = await raw(http, served.url, loop_id, token, address)
        await ws.send_bytes(frame)
        code, reason = await closed_with(ws)
        assert code == CloseCode.BAD_REQUEST, (frame, code, reason)
    ws = await raw(http, served.url, loop_id, token, address)
    await ws.send_str("text")
    assert (await closed_with(ws))[0] == CloseCode.BAD_REQUEST
    await still_serves(served.url, token, loop_id)


async def test_a_frame_of_0xff_before_auth_is_closed_4400_without_stalling_anyone(
    served: ServerProcess,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
) -> None:
    # A varint that never ends, a whole frame long, as the first message (no token yet): read
    # by an unbounded varint decoder it took seconds of the event loop per frame.
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    frame = b"\xff" * (MAX_UPDATE_BYTES + FRAME_OVERHEAD - 1)  # the largest frame read (aiohttp: <)
    sockets = [
        await http.ws_connect(
            f"{served.url}/ws/loop:{loop_id}", headers={"X-Forwarded-For": fresh_address()}, max_msg_size=0
        )
        for _ in range(3)
    ]
    closes = []
    for ws in sockets:
        await ws.send_bytes(frame)
        closes.append(asyncio.ensure_future(closed_with(ws, timeout=30)))
    # Meanwhile the server answers others at once (a latency a hostile client must not break).
    for _ in range(5):
        start = time.perf_counter()
        async with http.get(f"{served.url}/healthz", headers={"X-Forwarded-For": address}) as resp:
            assert resp.status == 200
        assert time.perf_counter() - start < 1.0
        await asyncio.sleep(0.1)
    for code, reason in await asyncio.wait_for(asyncio.gather(*closes), timeout=2):
        assert (code, reason) == (CloseCode.BAD_REQUEST, "bad_request")
    await still_serves(served.url, token, loop_id)


async def test_nan_in_awareness_closes_4400_and_reaches_nobody(
    served: ServerProcess,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
) -> None:
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    watcher = await YwsClient(served.url, f"loop:{loop_id}", token=token).connect()
    try:
        ws = await raw(http, served.url, loop_id, token, address)
        for state in ('{"cursor": NaN}', '{"x": Infinity}', '{"x": 1e999}'):
            update = (
                write_var_uint(1) + write_var_uint(4242) + write_var_uint(1) + write_message(state.encode())
            )
            await ws.send_bytes(protocol.awareness_message(update))
            code, reason = await closed_with(ws)
            assert (code, reason) == (CloseCode.BAD_REQUEST, "malformed_awareness")
            ws = await raw(http, served.url, loop_id, token, address)
        fine = json.dumps({"cursor": 1})
        update = write_var_uint(1) + write_var_uint(4243) + write_var_uint(1) + write_message(fine.encode())
        await ws.send_bytes(protocol.awareness_message(update))
        await eventually(lambda: any(b"cursor" in u for u in watcher.awareness))
        assert not any(b"NaN" in u or b"Infinity" in u or b"1e999" in u for u in watcher.awareness)
        assert watcher.close_code is None
    finally:
        await watcher.close()


async def test_a_message_flood_is_closed_1013(
    served: ServerProcess,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
) -> None:
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    ws = await raw(http, served.url, loop_id, token, address)
    try:
        for _ in range(2000):
            await ws.send_bytes(bytes([protocol.MessageType.QUERY_AWARENESS]))
    except (ConnectionError, aiohttp.ClientError):
        pass
    code, reason = await closed_with(ws)
    assert (code, reason) == (CloseCode.RATE_LIMITED, "rate_limited")
    await still_serves(served.url, token, loop_id)


async def test_a_socket_that_stops_reading_is_dropped_with_bounded_memory(
    served: ServerProcess,  # noqa: F811
    http: aiohttp.ClientSession,  # noqa: F811
) -> None:
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    size = await big_loop(served.url, token, loop_id)
    assert size > 3 * MiB
    pid = served.proc.pid  # type: ignore[union-attr]
    log_start = len(served.log())
    ws = await raw(http, served.url, loop_id, token, address)
    before = rss_bytes(pid)
    for i in range(100):  # each answered with the whole document (~380 MiB in all), never read
        await ws.send_bytes(protocol.sync_message(YSyncMessageType.SYNC_STEP1, state_vector(1000 + i)))
    await eventually(lambda: "dropping the connection" in served.log()[log_start:], timeout=30)
    assert growth(before, pid) < MAX_RSS_GROWTH, f"RSS grew {growth(before, pid) / MiB:.0f} MiB"
    await still_serves(served.url, token, loop_id)
