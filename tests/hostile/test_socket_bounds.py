"""Hostile clients at the Socket.IO / Engine.IO layer (issue 25, findings 1, 2, 3, 7, 8), against
a real ``musicplayground serve`` process on SQLite and Postgres, whose memory is read from
/proc: each abuse is bounded (memory, file descriptors, log), the socket is dropped with a clear
reason, and well-behaved clients keep working.

Every test speaks from its own client address (``X-Forwarded-For`` from a trusted proxy), so the
per-IP limits of one test never touch another.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from pycrdt import Encoder, Map

from loadtest.client import CollabClient, namespace_for
from tests.conftest import TEST_SECRET
from tests.helpers import LOOP, eventually
from tests.hostile.wire import PLACEHOLDER, RawSocket, binary_header, open_fds, rss_bytes
from tests.server_process import ServerProcess, run_cli

MiB = 1024 * 1024
MAX_RSS_GROWTH = 64 * MiB  # what one hostile client may make the server hold (issue 25)
CONNECT_TIMEOUT = 1.0  # RT_CONNECT_TIMEOUT_SECONDS of the server under test
SOCKET_CONNECTS_PER_MINUTE = 40  # RATE_LIMIT_SOCKET_CONNECTS_PER_IP_PER_MINUTE of the server
MAX_MALFORMED_FRAMES = (
    5  # realtime.ysocketio.engineio_adapter.MAX_MALFORMED_FRAMES: the server's, said here as a client sees it
)
_addresses = itertools.count(1)


def fresh_address() -> str:
    """A client address no other test uses (believed: the server trusts loopback proxies)."""
    n = next(_addresses)
    return f"10.25.{n // 250}.{n % 250 + 1}"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp(f"socket-bounds-{request.param}")
    env = {
        "DATA_DIR": str(tmp / "data"),
        "SECRET_KEY": TEST_SECRET,
        "LOG_LEVEL": "INFO",
        "RT_CONNECT_TIMEOUT_SECONDS": str(CONNECT_TIMEOUT),
        "RATE_LIMIT_SOCKET_CONNECTS_PER_IP_PER_MINUTE": str(SOCKET_CONNECTS_PER_MINUTE),
        "TRUSTED_PROXIES": "127.0.0.0/8",
    }
    if request.param == "postgres":
        env["DATABASE_URL"] = str(request.getfixturevalue("postgres_url"))
    else:
        assert run_cli("db", "upgrade", env=env).returncode == 0
    with ServerProcess(env, log_path=tmp / "server.log") as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


async def account_and_loop(http: aiohttp.ClientSession, url: str, address: str) -> tuple[str, str]:
    headers = {"X-Forwarded-For": address}
    async with http.post(f"{url}/api/auth/anonymous", headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        token = (await resp.json())["token"]
    headers["Authorization"] = f"Bearer {token}"
    async with http.post(f"{url}/api/loops", json=LOOP, headers=headers) as resp:
        assert resp.status == 201, await resp.text()
        return token, (await resp.json())["id"]


async def still_serves(url: str, token: str, loop_id: str) -> None:
    """A well-behaved client connects, syncs and edits."""
    async with CollabClient(url, "loop", loop_id, token=token) as client:
        client.doc.get("meta", type=Map)["name"] = "still served"
        await client.flush()


def growth(before: int, pid: int) -> int:
    return rss_bytes(pid) - before


# --- 1. binary attachments without end ------------------------------------------------------


async def test_a_header_announcing_endless_attachments_drops_the_socket(
    served: ServerProcess, http: aiohttp.ClientSession
) -> None:
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    namespace = namespace_for("loop", loop_id)
    pid = served.proc.pid  # type: ignore[union-attr]
    sockets = [await RawSocket.open(http, served.url, forwarded_for=address) for _ in range(4)]
    for sock in sockets:
        await sock.connect_namespace(namespace, {"token": token})
    before = rss_bytes(pid)
    chunk = b"\x00" * (256 * 1024)

    async def flood(sock: RawSocket) -> int:
        """What python-socketio would append to the packet forever: up to 256 MiB a socket."""
        await sock.ws.send_str(binary_header(namespace, "sync-update", attachments=9_999_999_999))
        sent = 0
        try:
            while sent < 256 * MiB:
                await sock.ws.send_bytes(chunk)
                sent += len(chunk)
        except (ConnectionError, aiohttp.ClientError):
            pass
        return sent

    sent = await asyncio.gather(*(flood(sock) for sock in sockets))
    for sock in sockets:
        code, reason = await sock.closed_by_server()
        assert code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        assert "at most 4 binary attachments, this one announced 9999999999" in reason
    assert growth(before, pid) < MAX_RSS_GROWTH, f"RSS grew {growth(before, pid) / MiB:.0f} MiB, {sent=}"
    await still_serves(served.url, token, loop_id)


async def test_a_packet_bigger_than_an_update_drops_the_socket(
    served: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """One attachment, but a text part padded to the frame limit: the packet's bytes are bounded."""
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    namespace = namespace_for("loop", loop_id)
    sock = await RawSocket.open(http, served.url, forwarded_for=address)
    await sock.connect_namespace(namespace, {"token": token})
    padding = json.dumps("p" * (300 * 1024))
    await sock.ws.send_str(f'451-{namespace},["sync-update",{PLACEHOLDER},{padding}]')
    await sock.ws.send_bytes(b"\x00" * (300 * 1024))
    code, reason = await sock.closed_by_server()
    assert code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert "a Socket.IO packet may hold at most" in reason
    await still_serves(served.url, token, loop_id)


# --- 2. the binary-header cache, and decoding before authorization --------------------------


def heavy_header(namespace: str) -> str:
    """A ~300 KiB binary-event text whose JSON decodes to 100,000 lists (~6 MiB of objects)."""
    return f'451-{namespace},["sync-update",{PLACEHOLDER},' + "[]," * 100_000 + "[]]"


async def test_oversized_binary_headers_from_bare_sessions_are_never_decoded(
    served: ServerProcess, http: aiohttp.ClientSession
) -> None:
    address = fresh_address()
    pid = served.proc.pid  # type: ignore[union-attr]
    before = rss_bytes(pid)
    sent = 0
    for i in range(20):  # 100 headers, no token and no namespace CONNECT
        sock = await RawSocket.open(http, served.url, forwarded_for=address)
        for _ in range(MAX_MALFORMED_FRAMES):
            await sock.ws.send_str(heavy_header(f"/yjs|loop:{i:08d}-0000-0000-0000-000000000000"))
            sent += 1
        code, reason = await sock.closed_by_server()
        assert code == aiohttp.WSCloseCode.POLICY_VIOLATION and "malformed" in reason
    assert sent == 100
    assert growth(before, pid) < MAX_RSS_GROWTH, f"RSS grew {growth(before, pid) / MiB:.0f} MiB"


async def test_oversized_binary_headers_for_other_namespaces_are_not_kept(
    served: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """A connected client's headers are decoded (they name their namespace), never cached."""
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    pid = served.proc.pid  # type: ignore[union-attr]
    before = rss_bytes(pid)
    for i in range(10):  # 50 headers
        sock = await RawSocket.open(http, served.url, forwarded_for=address)
        await sock.connect_namespace(namespace_for("loop", loop_id), {"token": token})
        for j in range(MAX_MALFORMED_FRAMES):
            await sock.ws.send_str(heavy_header(f"/yjs|loop:{i:08d}-{j:04d}-0000-0000-000000000000"))
        code, reason = await sock.closed_by_server()
        assert code == aiohttp.WSCloseCode.POLICY_VIOLATION and "malformed" in reason
    assert growth(before, pid) < MAX_RSS_GROWTH, f"RSS grew {growth(before, pid) / MiB:.0f} MiB"
    await still_serves(served.url, token, loop_id)


# --- 3. replies queued to a socket that stops reading ----------------------------------------


async def big_loop(url: str, token: str, loop_id: str) -> int:
    """Pad the loop's document to ~3.8 MiB (meta entries readers skip); its encoded size."""
    async with CollabClient(url, "loop", loop_id, token=token) as owner:
        meta = owner.doc.get("meta", type=Map)
        for i in range(19):
            meta[f"pad{i}"] = "x" * 200_000  # one update each, under RT_MAX_UPDATE_BYTES
            await owner.flush()
        return len(owner.doc.get_update())


def state_vector(client_id: int) -> bytes:
    """A valid state vector the document does not know: the answer is the whole document."""
    encoder = Encoder()
    encoder.write_var_uint(1)
    encoder.write_var_uint(client_id)
    encoder.write_var_uint(1)
    return encoder.to_bytes()


async def test_a_socket_that_stops_reading_is_dropped_before_its_replies_pile_up(
    served: ServerProcess, http: aiohttp.ClientSession
) -> None:
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    size = await big_loop(served.url, token, loop_id)
    assert size > 3 * MiB
    namespace = namespace_for("loop", loop_id)
    pid = served.proc.pid  # type: ignore[union-attr]
    log_start = len(served.log())
    sock = await RawSocket.open(http, served.url, forwarded_for=address)
    await sock.connect_namespace(namespace, {"token": token})  # the room is loaded
    before = rss_bytes(pid)
    for i in range(100):  # and never read again
        await sock.emit_binary(namespace, "sync-step-1", state_vector(1000 + i), ack=i)
    await eventually(lambda: "the client does not read" in served.log()[log_start:], timeout=20)
    assert growth(before, pid) < MAX_RSS_GROWTH, f"RSS grew {growth(before, pid) / MiB:.0f} MiB"
    with pytest.raises((ConnectionError, TimeoutError)):  # what was sent, then the end
        while True:
            await sock.next_frame(timeout=5)
    await still_serves(served.url, token, loop_id)


# --- 7. bare Engine.IO sessions --------------------------------------------------------------


async def test_bare_sessions_are_closed_after_the_connect_timeout_and_counted_per_ip(
    served: ServerProcess, http: aiohttp.ClientSession
) -> None:
    address = fresh_address()
    pid = served.proc.pid  # type: ignore[union-attr]
    fds = open_fds(pid)
    bare = [
        await RawSocket.open(http, served.url, forwarded_for=address)
        for _ in range(SOCKET_CONNECTS_PER_MINUTE)
    ]
    assert open_fds(pid) >= fds + len(bare) - 2
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await RawSocket.open(http, served.url, forwarded_for=address)
    assert refused.value.status == 429
    assert refused.value.headers is not None and int(refused.value.headers["Retry-After"]) >= 1
    # Another address is not affected.
    other = await RawSocket.open(http, served.url, forwarded_for=fresh_address())
    closes = await asyncio.gather(
        *(sock.closed_by_server(timeout=CONNECT_TIMEOUT + 5) for sock in [*bare, other])
    )
    for code, reason in closes:
        assert code == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert reason == f"no namespace within {CONNECT_TIMEOUT:g} s"
    await eventually(lambda: open_fds(pid) <= fds + 2, timeout=10)


async def test_a_session_whose_last_namespace_left_gets_the_connect_timeout_again(
    served: ServerProcess, http: aiohttp.ClientSession
) -> None:
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    namespace = namespace_for("loop", loop_id)
    sock = await RawSocket.open(http, served.url, forwarded_for=address)
    await sock.connect_namespace(namespace, {"token": token})
    await asyncio.sleep(CONNECT_TIMEOUT + 0.5)  # connected: no timeout
    await sock.ws.send_str("3")  # a stray PONG: the read loop turns once
    await sock.ws.send_str(f"41{namespace},")  # leaves its only namespace
    code, reason = await sock.closed_by_server(timeout=CONNECT_TIMEOUT + 5)
    assert (code, reason) == (
        aiohttp.WSCloseCode.POLICY_VIOLATION,
        f"no namespace within {CONNECT_TIMEOUT:g} s",
    )


# --- 8. log flooding ---------------------------------------------------------------------------


MAX_LOG_BYTES_PER_CONNECTION = 1024  # its access-log line and one WARNING line


async def test_malformed_frames_cost_one_log_line_and_a_disconnect(
    served: ServerProcess, http: aiohttp.ClientSession
) -> None:
    address = fresh_address()
    token, loop_id = await account_and_loop(http, served.url, address)
    namespace = namespace_for("loop", loop_id)
    log_start = len(served.log().encode())
    connections = 0
    for connected in (False, True):
        for frames in (["49"] * 1000, [f"42{namespace},[oops"] * 1000, ["4"] * 1000, ["x"] * 1000):
            sock = await RawSocket.open(http, served.url, forwarded_for=address)
            connections += 1
            if connected:
                await sock.connect_namespace(namespace, {"token": token})
            try:
                for frame in frames:
                    await sock.ws.send_str(frame)
            except (ConnectionError, aiohttp.ClientError):
                pass  # dropped while we were still sending
            code, reason = await sock.closed_by_server()
            assert code == aiohttp.WSCloseCode.POLICY_VIOLATION
            assert reason == "too many malformed Socket.IO frames"
    await asyncio.sleep(0.5)  # the last access-log lines
    written = served.log_path.read_bytes()[log_start:].decode()
    assert "Traceback" not in written, written
    assert written.count("malformed frame") == connections, written
    assert len(written.encode()) < connections * MAX_LOG_BYTES_PER_CONNECTION, written
    await still_serves(served.url, token, loop_id)
