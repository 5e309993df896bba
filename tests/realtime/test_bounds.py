"""Bad input and limits: each gets a clear error event; the room and the others are unaffected."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pycrdt import Doc, Map

from loadtest.client import CollabConnectionRefused
from settings import Settings
from tests.helpers import eventually
from tests.realtime.conftest import ClientFactory


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(
        max_update_bytes=4096,
        max_document_bytes=64 * 1024,
        max_clients_per_room=3,
        max_messages_per_second=20,
    )


def codes(client: Any) -> list[str]:
    return [e["code"] for e in client.errors]


async def assert_room_still_works(a: Any, b: Any, value: str) -> None:
    a.doc.get("meta", type=Map)["name"] = value
    await eventually(lambda: b.doc.get("meta", type=Map).get("name") == value)


@pytest.mark.parametrize(
    ("event", "args", "code"),
    [
        ("sync-update", (b"\xff\xfe\xfd\x00garbage",), "malformed_update"),
        ("sync-update", ("a string, not bytes",), "malformed_update"),
        ("sync-update", (), "malformed_update"),
        ("sync-update", (b"\x01", b"\x02"), "malformed_update"),
        ("awareness-update", (b"\x05\xff",), "malformed_awareness"),
        ("awareness-update", ({"not": "bytes"},), "malformed_awareness"),
        ("no-such-event", (b"x",), "unknown_event"),
    ],
)
async def test_bad_messages_get_error_events(
    connect: ClientFactory,
    owner: dict[str, Any],
    loop: dict[str, Any],
    event: str,
    args: tuple[Any, ...],
    code: str,
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    before = b.doc.get_update()
    await a.emit_raw(event, *args)
    await a.wait_for(lambda: code in codes(a))
    assert b.errors == []
    assert b.doc.get_update() == before
    await assert_room_still_works(b, a, f"after {event}")


async def test_oversize_update_is_refused(
    connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    scratch: Doc[Any] = Doc()
    scratch.get("meta", type=Map)["name"] = "x" * 10_000
    await a.emit_raw("sync-update", scratch.get_update())
    await a.wait_for(lambda: "update_too_large" in codes(a))
    assert b.doc.get("meta", type=Map)["name"] != "x" * 10_000
    await assert_room_still_works(b, a, "still fine")


async def test_document_size_is_bounded(
    connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    scratch: Doc[Any] = Doc()
    deltas: list[bytes] = []
    scratch.observe(lambda event: deltas.append(event.update))
    for i in range(40):  # 40 updates of ~3 KB each: more than the 64 KB document limit
        scratch.get("meta", type=Map)[f"k{i}"] = "y" * 3000
        await a.emit_raw("sync-update", deltas[-1])
        await asyncio.sleep(0.06)  # stay under the message rate limit
    await a.wait_for(lambda: "document_too_large" in codes(a))


async def test_flood_is_rate_limited_and_others_unaffected(
    connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    for _ in range(200):
        await a.emit_raw("awareness-update", b"\x00")
    await a.wait_for(lambda: "rate_limited" in codes(a))
    assert codes(a).count("rate_limited") <= 3  # notices are themselves rate-limited
    assert b.errors == []
    await assert_room_still_works(b, a, "after the flood")


async def test_room_capacity(connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]) -> None:
    for _ in range(3):
        await connect(loop["id"], token=owner["token"])
    with pytest.raises(CollabConnectionRefused, match="already has 3 connections"):
        await connect(loop["id"], token=owner["token"])


async def test_bad_namespaces_are_refused(connect: ClientFactory, owner: dict[str, Any]) -> None:
    with pytest.raises(CollabConnectionRefused, match="not found"):
        await connect("00000000-0000-0000-0000-000000000000", token=owner["token"])
    with pytest.raises(CollabConnectionRefused, match="namespace"):
        await connect("not-a-uuid-but-36-characters-long-xx", token=owner["token"])
