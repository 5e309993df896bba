"""The optional ClamAV hook, against a small fake clamd speaking the real INSTREAM protocol
on loopback (TCP and a unix socket): clean files pass, flagged files and an unreachable
scanner are refused, and nothing is kept."""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from musicplayground.app import create_app
from settings import Settings
from tests.audio_fixtures import wav_bytes
from tests.helpers import bearer, expect_error, sign_up

MARKER = b"FAKE-MALWARE-SIGNATURE"
pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


class FakeClamd:
    """clamd's INSTREAM: ``zINSTREAM\\0``, then <u32 big-endian length><bytes>... until a zero length."""

    def __init__(self) -> None:
        self.scanned: list[int] = []  # sizes of the streams received

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        command = await reader.readuntil(b"\0")
        assert command == b"zINSTREAM\0"
        data = bytearray()
        while True:
            (length,) = struct.unpack(">I", await reader.readexactly(4))
            if length == 0:
                break
            data += await reader.readexactly(length)
        self.scanned.append(len(data))
        verdict = b"stream: Fake.Test.Signature FOUND\0" if MARKER in data else b"stream: OK\0"
        writer.write(verdict)
        await writer.drain()
        writer.close()


@pytest.fixture(params=["tcp", "unix"])
async def clamd(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[FakeClamd, str]]:
    fake = FakeClamd()
    if request.param == "tcp":
        server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        url = f"tcp://127.0.0.1:{port}"
    else:
        path = tmp_path / "clamd.sock"
        server = await asyncio.start_unix_server(fake.handle, str(path))
        url = f"unix://{path}"
    async with server:
        yield fake, url


def flagged_wav() -> bytes:
    """A valid WAV that carries the fake signature in an extra chunk after its audio."""
    wav = bytearray(wav_bytes(0.1))
    extra = b"junk" + struct.pack("<I", len(MARKER)) + MARKER
    wav += extra
    wav[4:8] = struct.pack("<I", len(wav) - 8)
    return bytes(wav)


async def test_clean_files_pass_flagged_ones_are_refused(
    aiohttp_client: Any, settings: Settings, clamd: tuple[FakeClamd, str]
) -> None:
    fake, url = clamd
    client: TestClient = await aiohttp_client(create_app(settings.replace(clamd_url=url)))
    owner = await sign_up(client)
    clean = wav_bytes(0.1)
    resp = await client.post(
        "/api/samples/upload", data={"file": io.BytesIO(clean)}, headers=bearer(owner["token"])
    )
    assert resp.status == 201, await resp.text()
    resp = await client.post(
        "/api/samples/upload", data={"file": io.BytesIO(flagged_wav())}, headers=bearer(owner["token"])
    )
    body = await expect_error(resp, 422, "malware_detected")
    assert "Fake.Test.Signature" in body["error"]
    assert fake.scanned == [len(clean), len(flagged_wav())]
    listed = await (await client.get("/api/samples", headers=bearer(owner["token"]))).json()
    assert listed["total"] == 1 and listed["totalSize"] == len(clean)
    files = [p for p in (settings.data_dir / "samples").rglob("*") if p.is_file()]
    assert len(files) == 1


async def test_unreachable_scanner_refuses_the_upload(
    aiohttp_client: Any, settings: Settings, tmp_path: Path
) -> None:
    url = f"unix://{tmp_path / 'nobody-listens.sock'}"
    client: TestClient = await aiohttp_client(create_app(settings.replace(clamd_url=url)))
    owner = await sign_up(client)
    resp = await client.post(
        "/api/samples/upload", data={"file": io.BytesIO(wav_bytes(0.1))}, headers=bearer(owner["token"])
    )
    await expect_error(resp, 503, "scanner_unavailable")
    listed = await (await client.get("/api/samples", headers=bearer(owner["token"]))).json()
    assert listed["total"] == 0
