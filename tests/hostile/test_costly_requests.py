"""Costly requests (issue 25, findings 4, 6 and 11), on SQLite and Postgres: what a request may
cost is bounded and charged before the work, and tampered input is a 400, never a 500."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from storage.explore import MAX_COUNT
from tests.community import account, create_document
from tests.helpers import expect_error

# --- 11. tampered explore cursors ---------------------------------------------------------------


def raw_cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor(*parts: Any) -> str:
    """A cursor as the server encodes one (``rest.explore.encode_cursor``), with any content."""
    return raw_cursor(json.dumps(list(parts)).encode())


SOME_ID = "00000000-0000-4000-8000-000000000000"
TAMPERED = {
    "views-2^63": ("views", cursor("loop", "views", 2**63, SOME_ID)),
    "views-2^31": ("views", cursor("loop", "views", 2**31, SOME_ID)),
    "views-negative": ("views", cursor("loop", "views", -1, SOME_ID)),
    "views-float": ("views", cursor("loop", "views", 1.5, SOME_ID)),
    "views-bool": ("views", cursor("loop", "views", True, SOME_ID)),
    "views-huge-literal": ("views", raw_cursor(b'["loop","views",' + b"9" * 120 + b',"x"]')),
    "forks-string": ("forks", cursor("loop", "forks", "12", SOME_ID)),
    "time-past-9999-in-utc": ("recent", cursor("loop", "recent", "9999-12-31T23:59:59-14:00", SOME_ID)),
    "time-before-year-1-in-utc": ("recent", cursor("loop", "recent", "0001-01-01T00:00:00+14:00", SOME_ID)),
    "time-not-iso": ("recent", cursor("loop", "recent", "yesterday", SOME_ID)),
    "time-a-number": ("recent", cursor("loop", "recent", 1700000000, SOME_ID)),
    "id-a-number": ("views", cursor("loop", "views", 3, 12345)),
    "id-null": ("views", cursor("loop", "views", 3, None)),
    "id-a-list": ("views", cursor("loop", "views", 3, [SOME_ID])),
    "id-not-a-uuid": ("views", cursor("loop", "views", 3, "not-a-uuid")),
    "an-object": ("views", raw_cursor(json.dumps({"a": 1, "b": 2, "c": 3, "d": 4}).encode())),
    "three-parts": ("views", cursor("loop", "views", 3)),
    "five-parts": ("views", cursor("loop", "views", 3, SOME_ID, "x")),
    "not-utf8": ("views", raw_cursor(b"\xff\xfe\x00")),
}


@pytest.mark.parametrize("name", sorted(TAMPERED))
async def test_every_tampered_cursor_is_a_400(client: TestClient, name: str) -> None:
    who = await account(client)
    await create_document(client, who, isPublic=True)
    sort, tampered = TAMPERED[name]
    resp = await client.get(f"/api/explore?sort={sort}&cursor={tampered}")
    body = await expect_error(resp, 400, "validation_error")
    assert body["details"][0]["field"] == "cursor" and "cursor" in body["error"]


async def test_cursors_at_the_edges_of_their_range_still_work(client: TestClient) -> None:
    who = await account(client)
    made = await create_document(client, who, isPublic=True)
    top = await client.get(f"/api/explore?sort=views&cursor={cursor('loop', 'views', MAX_COUNT, SOME_ID)}")
    assert top.status == 200 and [i["id"] for i in (await top.json())["items"]] == [made["id"]]
    late = cursor("loop", "recent", "9999-12-31T09:59:59-14:00", SOME_ID)  # 23:59:59 UTC
    resp = await client.get(f"/api/explore?sort=recent&cursor={late}")
    assert resp.status == 200 and [i["id"] for i in (await resp.json())["items"]] == [made["id"]]
    bottom = await client.get(f"/api/explore?sort=views&cursor={cursor('loop', 'views', 0, SOME_ID)}")
    assert bottom.status == 200 and (await bottom.json())["items"] == []
