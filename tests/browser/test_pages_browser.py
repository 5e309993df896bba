"""The public pages in a real headless browser: Debian's chromium, driven by Playwright.

No browser is downloaded: ``scripts/test`` installs the ``chromium`` package when
``/usr/bin/chromium`` is missing, and a missing browser fails these tests.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from PIL import Image
from playwright.async_api import BrowserContext, Page, async_playwright

from pages.markup import CELL_GAP, CELL_HEIGHT, CELL_WIDTH, CHORD_ROW
from tests.browser.chromium import CHROMIUM, FLAGS
from tests.helpers import LOOP, sign_up
from tests.sharing_helpers import create_doc, expire_share, share

LIGHT_EMPTY_CELL = "#e4e4ee"  # rest/pages.py's --cell in the light scheme


@pytest.fixture
async def browser() -> AsyncIterator[BrowserContext]:
    with tempfile.TemporaryDirectory(prefix="mp-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": 1280, "height": 900},
                device_scale_factor=1,
                color_scheme="light",
            )
            try:
                yield context
            finally:
                await context.close()


@pytest.fixture
def base_url(client: TestClient) -> str:
    return str(client.make_url("")).rstrip("/")


async def shared_loop(client: TestClient, **overrides: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    owner = await sign_up(client)
    loop = await create_doc(client, "loops", owner["token"], **overrides)
    return loop, await share(client, "loops", loop["id"], owner["token"])


def _rgb(hex_color: str) -> tuple[int, int, int]:
    return (int(hex_color[1:3], 16), int(hex_color[3:5], 16), int(hex_color[5:7], 16))


def _close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 6) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=False))


async def test_loop_page_draws_the_step_grid(
    client: TestClient, browser: BrowserContext, base_url: str
) -> None:
    _loop, link = await shared_loop(client)
    page: Page = await browser.new_page()
    response = await page.goto(f"{base_url}/loop/{link['shareToken']}")
    assert response is not None and response.status == 200
    grid = page.locator("svg.grid")
    columns = int(await grid.get_attribute("data-columns") or 0)
    lanes = int(await grid.get_attribute("data-lanes") or 0)
    assert (columns, lanes) == (64, 2)  # 4 bars of 16 steps; one lane per sound
    assert await page.locator(".lanes li").all_inner_texts() == ["Chords", "Kick", "Lead"]
    image = Image.open(io.BytesIO(await grid.screenshot())).convert("RGB")
    expected = (
        columns * (CELL_WIDTH + CELL_GAP) + CELL_GAP,
        CHORD_ROW + lanes * (CELL_HEIGHT + CELL_GAP) + CELL_GAP,
    )
    # The element may sit at a fractional offset: its screenshot can be one pixel larger.
    assert all(0 <= got - want <= 1 for got, want in zip(image.size, expected, strict=True)), image.size
    drawn = set()
    for lane in range(lanes):
        for column in range(columns):
            x = CELL_GAP + column * (CELL_WIDTH + CELL_GAP) + CELL_WIDTH // 2
            y = CHORD_ROW + CELL_GAP + lane * (CELL_HEIGHT + CELL_GAP) + CELL_HEIGHT // 2
            pixel = image.getpixel((x, y))
            assert isinstance(pixel, tuple)  # an RGB image's pixel
            if not _close(pixel, _rgb(LIGHT_EMPTY_CELL)):
                drawn.add((column, lane))
    # LOOP: drum-kick at step 0, synth-lead at step 4 (lanes in the kit's order).
    assert drawn == {(0, 0), (4, 1)}
    assert [s["step"] for s in LOOP["iconSequence"]] == [0, 4]


async def test_meta_tags_for_link_previews(
    client: TestClient, browser: BrowserContext, base_url: str
) -> None:
    _loop, link = await shared_loop(client, name='Night <drive> & "co"')
    page = await browser.new_page()
    await page.goto(f"{base_url}/loop/{link['shareToken']}")

    async def meta(selector: str) -> str | None:
        return await page.locator(f"meta[{selector}]").get_attribute("content")

    assert await meta('property="og:title"') == 'Night <drive> & "co"'
    assert await meta('name="twitter:title"') == 'Night <drive> & "co"'
    assert await meta('property="og:url"') == f"http://testserver/loop/{link['shareToken']}"
    assert await meta('name="twitter:card"') == "summary_large_image"
    assert await meta('property="og:image"') == f"http://testserver/preview/{link['shareToken']}.png"
    assert await meta('name="twitter:image"') == f"http://testserver/preview/{link['shareToken']}.png"
    description = await meta('property="og:description"') or ""
    assert "4-bar loop at 120 BPM" in description and "C maj7" in description
    assert await page.locator("h1").inner_text() == 'Night <drive> & "co"'  # text, not markup
    assert await page.locator("drive").count() == 0
    assert await page.title() == 'Night <drive> & "co"' + " · Music Playground"
    assert await page.locator("ol.chords li").all_inner_texts() == ["C maj7", "G"]


async def test_expired_link_shows_a_friendly_410_page(
    client: TestClient, browser: BrowserContext, base_url: str
) -> None:
    _loop, link = await shared_loop(client)
    await expire_share(client, link["shareToken"])
    page = await browser.new_page()
    response = await page.goto(f"{base_url}/loop/{link['shareToken']}")
    assert response is not None and response.status == 410
    assert response.headers["content-type"].startswith("text/html")
    assert await page.locator("h1").inner_text() == "This link has expired"


async def test_embed_frames_on_another_site_and_the_full_page_refuses(
    client: TestClient, browser: BrowserContext, base_url: str, aiohttp_server: Any
) -> None:
    loop, link = await shared_loop(client)
    token = link["shareToken"]

    async def host_page(_request: web.Request) -> web.Response:
        return web.Response(
            text=(
                "<!doctype html><title>blog</title>"
                f'<iframe id="embed" src="{base_url}/embed/{token}" width="600" height="300"></iframe>'
                f'<iframe id="full" src="{base_url}/loop/{token}" width="600" height="300"></iframe>'
            ),
            content_type="text/html",
        )

    other_site = web.Application()
    other_site.router.add_get("/", host_page)
    server = await aiohttp_server(other_site)
    page = await browser.new_page()
    await page.goto(str(server.make_url("/")))
    embed = page.frame_locator("#embed")
    assert await embed.locator("h1").inner_text() == loop["name"]
    assert await embed.locator("svg.grid g.steps rect").count() == 2
    assert await embed.locator("a.open").get_attribute("target") == "_blank"
    await page.wait_for_load_state("load")  # waits for both frames, refused or not
    full_frame = await page.wait_for_selector("#full")
    assert full_frame is not None
    full = await full_frame.content_frame()
    assert full is not None
    # Chromium replaces a frame refused by X-Frame-Options / frame-ancestors with an error page.
    assert full.url.startswith("chrome-error://"), full.url
    assert loop["name"] not in await full.content()


# Relative luminance (WCAG) of an element's computed colour property, 0 (black) to 1 (white).
LUMINANCE = """([selector, property]) => {
  const value = getComputedStyle(document.querySelector(selector))[property];
  const [r, g, b] = value.match(/[\\d.]+/g).slice(0, 3).map((c) => {
    const s = Number(c) / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}"""


async def test_loop_page_fits_a_320_px_screen(
    client: TestClient, browser: BrowserContext, base_url: str
) -> None:
    # 8 bars: the grid (128 columns) is far wider than the screen, so only its own box scrolls.
    _loop, link = await shared_loop(client, name="A long loop name that has to wrap on a phone", length=8)
    page = await browser.new_page()
    await page.set_viewport_size({"width": 320, "height": 640})
    response = await page.goto(f"{base_url}/loop/{link['shareToken']}")
    assert response is not None and response.status == 200
    assert await page.evaluate("document.scrollingElement.scrollWidth") <= 320
    grid = page.locator("svg.grid")
    assert int(await grid.get_attribute("data-columns") or 0) == 128
    assert await grid.is_visible()
    box = await grid.bounding_box()
    assert box is not None and box["height"] > 0 and 0 <= box["x"] < 320 and box["width"] > 320
    assert await page.locator("#play").is_visible()


async def test_loop_page_follows_the_dark_scheme(
    client: TestClient, browser: BrowserContext, base_url: str
) -> None:
    _loop, link = await shared_loop(client)
    page = await browser.new_page()
    url = f"{base_url}/loop/{link['shareToken']}"
    await page.goto(url)
    assert await page.evaluate(LUMINANCE, ["body", "backgroundColor"]) > 0.8  # the light scheme first
    await page.emulate_media(color_scheme="dark")
    await page.goto(url)
    assert await page.evaluate(LUMINANCE, ["body", "backgroundColor"]) < 0.05
    for text in ("body", "h1"):
        assert await page.evaluate(LUMINANCE, [text, "color"]) > 0.7, text
    assert await page.locator("svg.grid").is_visible()
