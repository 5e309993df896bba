"""Public pages over HTTP: escaping, framing headers, ETags, error pages (both databases)."""

from __future__ import annotations

import gzip
import re

import pytest
from aiohttp.test_utils import TestClient

from pages.assets import page_assets
from tests.helpers import bearer, sign_up
from tests.sharing_helpers import create_doc, expire_share, share

EVIL = "<script>alert(\"x\")</script> & 'quotes'"


async def test_user_content_is_escaped(client: TestClient) -> None:
    owner = await sign_up(client)
    loop = await create_doc(
        client, "loops", owner["token"], name=EVIL, chordProgression=[{"bar": 0, "chord": "<img src=x>"}]
    )
    link = await share(client, "loops", loop["id"], owner["token"])
    html = await (await client.get(f"/loop/{link['shareToken']}")).text()
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;quotes&#x27;" in html
    assert "&lt;img src=x&gt;" in html


async def test_pages_refuse_framing_and_embeds_allow_it(client: TestClient) -> None:
    owner = await sign_up(client)
    loop = await create_doc(client, "loops", owner["token"])
    token = (await share(client, "loops", loop["id"], owner["token"]))["shareToken"]
    page = await client.get(f"/loop/{token}")
    assert page.status == 200 and page.content_type == "text/html"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Referrer-Policy"] == "no-referrer"
    embed = await client.get(f"/embed/{token}")
    assert embed.status == 200
    assert "X-Frame-Options" not in embed.headers
    assert "frame-ancestors *" in embed.headers["Content-Security-Policy"]
    assert 'target="_blank"' in await embed.text()


async def test_etag_revalidation(client: TestClient) -> None:
    owner = await sign_up(client)
    loop = await create_doc(client, "loops", owner["token"])
    token = (await share(client, "loops", loop["id"], owner["token"]))["shareToken"]
    first = await client.get(f"/loop/{token}")
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag) and first.headers["Cache-Control"] == "no-cache"
    again = await client.get(f"/loop/{token}", headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag and await again.read() == b""
    # An edit changes the page, so the old copy is no longer valid.
    resp = await client.patch(
        f"/api/loops/{loop['id']}", json={"name": "New"}, headers=bearer(owner["token"])
    )
    assert resp.status == 200
    changed = await client.get(f"/loop/{token}", headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag and "New" in await changed.text()


async def test_error_pages_are_html(client: TestClient) -> None:
    owner = await sign_up(client)
    loop = await create_doc(client, "loops", owner["token"])
    song = await create_doc(client, "songs", owner["token"])
    loop_token = (await share(client, "loops", loop["id"], owner["token"]))["shareToken"]
    song_token = (await share(client, "songs", song["id"], owner["token"]))["shareToken"]
    unknown = await client.get("/loop/nope")
    assert unknown.status == 404 and unknown.content_type == "text/html"
    wrong_kind = await client.get(f"/song/{loop_token}")
    assert wrong_kind.status == 404 and wrong_kind.content_type == "text/html"
    assert (await client.get(f"/song/{song_token}")).status == 200
    resp = await client.delete(f"/api/shares/{song_token}", headers=bearer(owner["token"]))
    assert resp.status == 200
    revoked = await client.get(f"/song/{song_token}")
    assert revoked.status == 410 and "turned off" in await revoked.text()
    await expire_share(client, loop_token)
    expired = await client.get(f"/embed/{loop_token}")
    assert expired.status == 410 and "expired" in await expired.text()


async def test_song_page_draws_its_timeline(client: TestClient) -> None:
    owner = await sign_up(client)
    song = await create_doc(client, "songs", owner["token"])
    token = (await share(client, "songs", song["id"], owner["token"]))["shareToken"]
    html = await (await client.get(f"/song/{token}")).text()
    assert 'data-total-bars="12"' in html
    assert html.count('class="block"') == 2
    assert "110 BPM" in html and "12 bars" in html
    assert 'property="og:description" content="A 12-bar song at 110 BPM' in html


@pytest.mark.npm  # the scripts come from node_modules and clients/js's build
async def test_page_scripts_are_served_here_immutable_under_their_digest(client: TestClient) -> None:
    owner = await sign_up(client)
    loop = await create_doc(client, "loops", owner["token"])
    token = (await share(client, "loops", loop["id"], owner["token"]))["shareToken"]
    html = await (await client.get(f"/loop/{token}")).text()
    scripts = re.findall(r'<script[^>]* src="([^"]+)"', html)
    assert [s.rsplit("/", 1)[1] for s in scripts] == ["Tone.js", "tonal.min.js", "page.js"]
    assert all(re.fullmatch(r"/static/(vendor|player)/[0-9a-f]{16}/[\w.]+", s) for s in scripts), scripts
    for src in scripts:
        resp = await client.get(src)
        assert resp.status == 200 and resp.content_type == "text/javascript"
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # The page's module imports its siblings relatively: the same digest serves them.
    player = scripts[2].replace("page.js", "player.js")
    assert (await client.get(player)).status == 200
    stale = re.sub(r"/[0-9a-f]{16}/", "/0000000000000000/", scripts[2])
    assert (await client.get(stale)).status == 404
    assert (await client.get(scripts[2].replace("page.js", "tsconfig.json"))).status == 404
    # No CDN: every script and connection is this server's (and the sample store's, if any).
    csp = (await client.get(f"/loop/{token}")).headers["Content-Security-Policy"]
    assert "script-src 'self' blob:;" in csp and "connect-src 'self';" in csp


@pytest.mark.npm
def test_the_pages_own_scripts_stay_within_150_kb_gzipped_beyond_the_libraries() -> None:
    assets = page_assets()
    assert assets.player is not None and assets.live is not None, "run npm run build in clients/js"
    own = b"".join(
        path.read_bytes() for group in (assets.player, assets.live) for path in group.files.values()
    )
    assert len(gzip.compress(own)) <= 150 * 1024


async def test_a_song_page_names_its_public_loops_and_not_private_ones(client: TestClient) -> None:
    owner = await sign_up(client)
    public = await create_doc(client, "loops", owner["token"], name="Verse <1>", isPublic=True)
    private = await create_doc(client, "loops", owner["token"], name="Secret hook")
    timeline = [
        {"id": "a", "loopId": public["id"], "startBar": 0, "duration": 4},
        {"id": "b", "loopId": private["id"], "startBar": 4, "duration": 4},
    ]
    song = await create_doc(client, "songs", owner["token"], timeline=timeline)
    token = (await share(client, "songs", song["id"], owner["token"]))["shareToken"]
    html = await (await client.get(f"/song/{token}")).text()
    assert ">Verse &lt;1&gt;</text>" in html and "Secret hook" not in html and ">Loop</text>" in html
    shared = await (await client.get(f"/api/shared/{token}?include=loops")).json()
    assert [loop["name"] for loop in shared["data"]["loops"]] == ["Verse <1>"]
