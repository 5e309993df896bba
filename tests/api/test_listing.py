"""The list endpoints: one query's page, hasMore at the edges, the counted total, content on demand."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import LOOP, SONG, bearer, sign_up

KINDS = {"loops": (LOOP, ("chordProgression", "iconSequence")), "songs": (SONG, ("timeline",))}


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def make(client: TestClient, kind: str, auth: dict[str, str], count: int) -> list[dict[str, Any]]:
    made = []
    for i in range(count):
        body = {**KINDS[kind][0], "name": f"{kind} {i}", "isPublic": i % 2 == 0}
        resp = await client.post(f"/api/{kind}", json=body, headers=auth)
        assert resp.status == 201, await resp.text()
        created = await resp.json()
        created.pop("warnings", None)  # what a song's POST reports, not a field of the song
        made.append(created)
    return made


async def page(client: TestClient, kind: str, auth: dict[str, str], query: str) -> dict[str, Any]:
    resp = await client.get(f"/api/{kind}?{query}", headers=auth)
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


async def test_has_more_and_total_at_the_edges(client: TestClient, kind: str) -> None:
    auth = bearer((await sign_up(client))["token"])
    made = await make(client, kind, auth, 3)
    newest_first = [m["id"] for m in reversed(made)]
    first = await page(client, kind, auth, "limit=2")
    assert [x["id"] for x in first[kind]] == newest_first[:2]
    assert (first["total"], first["page"], first["hasMore"]) == (3, 1, True)
    last = await page(client, kind, auth, "limit=2&page=2")
    assert [x["id"] for x in last[kind]] == newest_first[2:]
    assert (last["total"], last["hasMore"]) == (3, False)
    exact = await page(client, kind, auth, "limit=3")
    assert len(exact[kind]) == 3 and exact["hasMore"] is False
    beyond = await page(client, kind, auth, "limit=2&page=9")
    assert (beyond[kind], beyond["total"], beyond["hasMore"]) == ([], 3, False)


async def test_filter_by_visibility_counts_only_the_match(client: TestClient, kind: str) -> None:
    auth = bearer((await sign_up(client))["token"])
    await make(client, kind, auth, 3)  # public, private, public (the test quota allows 3 songs)
    public = await page(client, kind, auth, "public=true&limit=1")
    assert public["total"] == 2 and public["hasMore"] is True
    assert all(x["isPublic"] for x in public[kind])
    private = await page(client, kind, auth, "public=false")
    assert private["total"] == 1 and not any(x["isPublic"] for x in private[kind])


async def test_summaries_leave_out_content_unless_asked(client: TestClient, kind: str) -> None:
    auth = bearer((await sign_up(client))["token"])
    [made] = await make(client, kind, auth, 1)
    heavy = KINDS[kind][1]
    [summary] = (await page(client, kind, auth, ""))[kind]
    assert not set(heavy) & set(summary)
    assert summary == {k: v for k, v in made.items() if k not in heavy}
    [full] = (await page(client, kind, auth, "include=content"))[kind]
    assert full == made
    assert "docState" not in full and "docLogPosition" not in full


async def test_only_the_callers_documents_are_listed(client: TestClient, kind: str) -> None:
    alice, bob = bearer((await sign_up(client))["token"]), bearer((await sign_up(client))["token"])
    await make(client, kind, alice, 2)
    listed = await page(client, kind, bob, "")
    assert (listed[kind], listed["total"], listed["hasMore"]) == ([], 0, False)
