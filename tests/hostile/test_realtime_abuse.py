"""Hostile real-time clients (issue 6): each abuse is refused with a clear error, the room keeps
working for well-behaved clients, and /healthz keeps answering while it happens. Runs on
SQLite and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pycrdt import Doc, Encoder, Map

from loadtest.client import CollabClient, CollabConnectionRefused
from music.bounds import MAX_STEPS
from music.kinds import DocKind
from music.reading import loop_doc_to_content
from rest.context import REST_CONTEXT
from settings import Settings
from tests.helpers import bearer, eventually, expect_error, sign_up
from tests.hostile.conftest import HealthyDuring, codes, room_still_works
from tests.js_client import JsClient
from tests.realtime.conftest import ClientFactory


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(max_clients_per_room=8, max_connections_per_user=3, max_messages_per_second=200)


async def make_public(client: TestClient, owner: dict[str, Any], loop: dict[str, Any]) -> None:
    headers = bearer(owner["token"])
    resp = await client.patch(f"/api/loops/{loop['id']}", json={"isPublic": True}, headers=headers)
    assert resp.status == 200


def live_room(client: TestClient, loop: dict[str, Any]) -> Any:
    room = client.app[REST_CONTEXT].documents.loaded(DocKind.LOOP, uuid.UUID(loop["id"]))
    assert room is not None
    return room


def awareness_entry(client_id: int, clock: int, state_json: str) -> bytes:
    """A y-protocols awareness update with one entry, state given as raw JSON text."""
    encoder = Encoder()
    encoder.write_var_uint(1)
    encoder.write_var_uint(client_id)
    encoder.write_var_uint(clock)
    encoder.write_var_string(state_json)
    return encoder.to_bytes()


# --- 1. namespace aliases and room caps ---------------------------------------------------


@pytest.mark.parametrize(
    "alias",
    [
        lambda i: i.upper(),
        lambda i: "----" + i.replace("-", ""),  # dashes moved: uuid.UUID() still accepts it
        lambda i: "{" + i[:-2] + "}",
    ],
    ids=["uppercase", "dash-shifted", "braced"],
)
async def test_namespace_aliases_are_refused(
    client: TestClient,
    base_url: str,
    connect: ClientFactory,
    owner: dict[str, Any],
    loop: dict[str, Any],
    alias: Any,
    healthy_during: HealthyDuring,
) -> None:
    await make_public(client, owner, loop)
    stranger = await sign_up(client)
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=stranger["token"])
    spelled = alias(loop["id"])
    async with healthy_during():
        for _ in range(5):
            with pytest.raises(CollabConnectionRefused, match="lowercase UUID"):
                await connect(spelled, token=stranger["token"])
    # The REST edge accepts one spelling too (400; the router already refuses braces: 404).
    resp = await client.get(f"/api/loops/{spelled}", headers=bearer(owner["token"]))
    await expect_error(resp, 404 if "{" in spelled else 400)
    await room_still_works(a, b, "after aliases")


async def test_one_user_cannot_fill_a_room_and_viewers_never_lock_out_editors(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    await make_public(client, owner, loop)
    hog = await sign_up(client)
    for _ in range(3):
        await connect(loop["id"], token=hog["token"])
    with pytest.raises(CollabConnectionRefused, match="already have 3 connections"):
        await connect(loop["id"], token=hog["token"])
    # Viewers fill the room up to the writers' reserve (8 - 2) ...
    for _ in range(3):
        await connect(loop["id"], token=(await sign_up(client))["token"])
    with pytest.raises(CollabConnectionRefused, match="as many viewers"):
        await connect(loop["id"], token=(await sign_up(client))["token"])
    # ... and the owner still gets in.
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    assert a.role == "owner"
    await room_still_works(a, b, "owner got in")
    with pytest.raises(CollabConnectionRefused, match="already has 8 connections"):
        await connect(loop["id"], token=owner["token"])


async def test_an_alias_viewer_cannot_outlive_revocation(
    client: TestClient, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    """The original attack: a viewer on an alias kept reading after the loop went private."""
    await make_public(client, owner, loop)
    stranger = await sign_up(client)
    with pytest.raises(CollabConnectionRefused):
        await connect(loop["id"].upper(), token=stranger["token"])
    viewer = await connect(loop["id"], token=stranger["token"])
    await client.patch(f"/api/loops/{loop['id']}", json={"isPublic": False}, headers=bearer(owner["token"]))
    await viewer.wait_for(lambda: "access_revoked" in codes(viewer))


# --- 2. cheap denial of service through decoders --------------------------------------------


async def test_state_vector_bombs_are_refused_cheaply(
    client: TestClient,
    connect: ClientFactory,
    owner: dict[str, Any],
    loop: dict[str, Any],
    healthy_during: HealthyDuring,
) -> None:
    await make_public(client, owner, loop)
    a = await connect(loop["id"], token=owner["token"])
    viewer = await connect(loop["id"], token=(await sign_up(client))["token"])
    full = a.doc.get_update()
    async with healthy_during():
        for bomb in [b"\x80\x80\x80\x80\x02", b"\xff\xff\xff\xff\x0f", b"\x05\x01", b"\x01" + b"\xff" * 4000]:
            reply = await viewer.call_raw("sync-step-1", bomb, timeout=10)
            # Refused with an error, answered with the whole document instead.
            other: Doc[Any] = Doc()
            other.apply_update(reply)
            assert loop_doc_to_content(other) == loop_doc_to_content(a.doc)
    await viewer.wait_for(lambda: "malformed_message" in codes(viewer))
    assert len(full) > 2
    await room_still_works(a, viewer, "after state vector bombs")


async def test_update_count_bombs_are_refused(
    connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any], healthy_during: HealthyDuring
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    async with healthy_during():
        for _ in range(5):
            await a.emit_raw("sync-update", b"\x80\x80\x80\x40")  # claims 2^27 clients
        await a.wait_for(lambda: codes(a).count("malformed_update") >= 1)
    await room_still_works(b, a, "after update bombs")


# --- 4. pending updates -----------------------------------------------------------------------


async def test_updates_with_missing_dependencies_are_refused_and_never_held(
    client: TestClient,
    connect: ClientFactory,
    owner: dict[str, Any],
    loop: dict[str, Any],
    healthy_during: HealthyDuring,
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    attacker = await connect(loop["id"], token=owner["token"], synced=True)
    room = live_room(client, loop)
    before = len(room.doc.get_update())
    source: Doc[Any] = Doc(client_id=4242)
    updates: list[bytes] = []
    source.observe(lambda event: updates.append(event.update))
    async with healthy_during():
        for i in range(12):
            source.get("meta", type=Map)[f"k{i}"] = "p" * 2000
        for update in updates[1:]:  # never the first: every later one depends on it
            await attacker.emit_raw("sync-update", update)
        await attacker.wait_for(lambda: "missing_dependencies" in codes(attacker) or print(codes(attacker)))
        # After ten refused updates the socket is dropped.
        await attacker.wait_for(lambda: "too_many_refused_updates" in codes(attacker), timeout=10)
    # Nothing of it is held by the live document (yrs would keep it "pending", uncounted).
    assert len(room.doc.get_update()) <= before + 64
    await room_still_works(a, b, "after pending floods")


# --- 6. content REST would refuse -------------------------------------------------------------


async def test_live_content_beyond_the_rest_bounds_is_refused(
    client: TestClient,
    connect: ClientFactory,
    owner: dict[str, Any],
    loop: dict[str, Any],
    healthy_during: HealthyDuring,
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    writer = await connect(loop["id"], token=owner["token"])
    room = live_room(client, loop)
    version = room.version
    too_many: Doc[Any] = Doc(client_id=77)
    too_many.apply_update(writer.doc.get_update())
    steps = too_many.get("steps", type=Map)
    with too_many.transaction():
        for i in range(MAX_STEPS + 1):
            steps[f"junk-{i}"] = Map({"step": i % 64, "soundId": "x"})
    fat_entry: Doc[Any] = Doc(client_id=78)
    fat_entry.apply_update(writer.doc.get_update())
    fat_entry.get("steps", type=Map)["fat"] = Map({f"a{i}": i for i in range(100)})
    async with healthy_during():
        await writer.emit_raw("sync-update", too_many.get_update(writer.doc.get_state()))
        await writer.wait_for(lambda: "content_too_large" in codes(writer))
        await writer.emit_raw("sync-update", fat_entry.get_update(writer.doc.get_state()))
        await writer.wait_for(lambda: codes(writer).count("content_too_large") == 2)
    assert room.version == version  # the live document never saw either
    resp = await client.get(f"/api/loops/{loop['id']}", headers=bearer(owner["token"]))
    assert len((await resp.json())["iconSequence"]) == len(loop["iconSequence"])
    await room_still_works(a, b, "after oversized content")


# --- 3. poisoned awareness ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_id", "state"),
    [
        (1001, '{"x": NaN}'),
        (1002, '{"x": Infinity}'),
        (1003, '{"x": -Infinity}'),
        (1004, '{"x": 1e999}'),
        (1005, '{"a": ' + "[" * 40 + "]" * 40 + "}"),
        (1006, '["not an object"]'),
        (2**32, '{"user": "id beyond uint32"}'),
        (2**70, '{"user": "id beyond 2^53"}'),
    ],
    ids=["nan", "infinity", "-infinity", "overflow", "deep", "array", "uint32", "huge-id"],
)
async def test_poisoned_awareness_is_refused(
    connect: ClientFactory,
    owner: dict[str, Any],
    loop: dict[str, Any],
    client_id: int,
    state: str,
    healthy_during: HealthyDuring,
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    async with healthy_during():
        await a.emit_raw("awareness-update", awareness_entry(client_id, 1, state))
        await a.wait_for(lambda: "malformed_awareness" in codes(a))
    late = await connect(loop["id"], token=owner["token"])
    a.set_awareness({"user": {"name": "A"}})
    await late.wait_for(lambda: a.client_id in late.remote_awareness())
    assert client_id not in late.remote_awareness()
    await room_still_works(a, late, "after poisoned awareness")


async def test_a_poisoned_awareness_state_does_not_break_the_js_client(
    client: TestClient, base_url: str, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    """The stock JS client used to throw on NaN in a replayed state and show an empty document."""
    attacker = await connect(loop["id"], token=owner["token"])
    await attacker.emit_raw("awareness-update", awareness_entry(31337, 1, '{"x": NaN}'))
    await attacker.wait_for(lambda: "malformed_awareness" in codes(attacker))
    attacker.set_awareness({"user": {"name": "fine"}})
    await eventually(lambda: attacker.client_id in live_room(client, loop).awareness.states)
    async with JsClient.start(base_url, f"loop:{loop['id']}", auth={"token": owner["token"]}) as js:
        await js.wait_event("synced", timeout=20)
        content = await js.dump()
        assert content["meta"]["name"] == loop["name"]
        states = await js.awareness_states()
        assert states.get(attacker.client_id) == {"user": {"name": "fine"}}
        assert 31337 not in states


# --- 7. awareness client-id takeover --------------------------------------------------------


async def test_a_departed_clients_awareness_id_cannot_be_taken_over(
    client: TestClient, base_url: str, connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    await make_public(client, owner, loop)
    observer = await connect(loop["id"], token=owner["token"])
    first = await connect(loop["id"], token=owner["token"])
    first.set_awareness({"user": "owner"})
    taken = first.client_id
    await observer.wait_for(lambda: taken in observer.remote_awareness())
    await first.close()
    await observer.wait_for(lambda: taken not in observer.remote_awareness())
    attacker = await connect(loop["id"], token=(await sign_up(client))["token"])
    await attacker.emit_raw("awareness-update", awareness_entry(taken, 10_000, '{"user": "impostor"}'))
    # The owner comes back with the id Yjs kept; their state is relayed, the impostor's never.
    back = CollabClient(base_url, "loop", loop["id"], token=owner["token"], doc=Doc(client_id=taken))
    try:
        await back.connect()
        # Yjs keeps its awareness clock across a reconnect: continue past the old one.
        back.set_awareness({"user": "owner"})
        back.set_awareness({"user": "owner again"})
        await observer.wait_for(lambda: observer.remote_awareness().get(taken) == {"user": "owner again"})
    finally:
        await back.close()
    await asyncio.sleep(0)
    assert all(state != {"user": "impostor"} for state in observer.remote_awareness().values())


@pytest.mark.parametrize("share_token", ["nul\u0000token", "x" * 10_000], ids=["nul", "huge"])
async def test_unstorable_or_huge_share_tokens_are_refused(
    connect: ClientFactory, owner: dict[str, Any], loop: dict[str, Any], share_token: str
) -> None:
    a = await connect(loop["id"], token=owner["token"])
    b = await connect(loop["id"], token=owner["token"])
    with pytest.raises(CollabConnectionRefused, match="loop not found"):
        await connect(loop["id"], share_token=share_token)
    await room_still_works(a, b, "after bad share tokens")
