"""The kit's demo page (clients/js/examples/demo) in Debian's chromium, driven by Playwright.

Two pages of ONE browser context (they share localStorage and would share a BroadcastChannel):
the owner, and a guest through the share link. The owner's toggles reach the guest's page
within a second; the guest's clicks are refused in the page, never sent over its socket, and
never reach the owner's page or the server; the server restarts and both pages reconnect, the
owner's toggles made while it was down landing afterwards. A screenshot of both pages is saved
(``KIT_SCREENSHOT``, or the test's temporary directory).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image
from playwright.async_api import BrowserContext, Page, Request, WebSocket, async_playwright

from tests.clients.harness import KIT, KitServer
from tests.server_process import free_port

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
LIVE_WITHIN_MS = 1000


@pytest.fixture
def demo_port() -> int:
    return free_port()


@pytest.fixture
def demo_server(demo_port: int, kit_built: None, tmp_path: Path) -> Iterator[str]:
    """``node examples/serve.mjs`` (what ``npm run demo`` runs) on a free port."""
    log = tmp_path / "demo-server.log"
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            ["node", "examples/serve.mjs", "--port", str(demo_port)],
            cwd=KIT,
            env={**os.environ, "HOST": "127.0.0.1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{demo_port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the demo server did not start"
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def api_server(tmp_path: Path, demo_port: int, kit_built: None) -> Iterator[KitServer]:
    server = KitServer(tmp_path, {"CORS_ORIGIN": f"http://127.0.0.1:{demo_port}"}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def context() -> AsyncIterator[BrowserContext]:
    with tempfile.TemporaryDirectory(prefix="mp-kit-chromium-") as profile:
        async with async_playwright() as playwright:
            browser_context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport={"width": 900, "height": 420},
            )
            try:
                yield browser_context
            finally:
                await browser_context.close()


def cell(page: Page, step: int, row: int) -> Any:
    return page.locator(f'#grid button[data-step="{step}"][data-row="{row}"]')


async def status(page: Page) -> str:
    return await page.locator("#status").inner_text()


async def wait_status(page: Page, wanted: str, timeout: float = 60_000) -> None:
    await page.wait_for_function(
        "wanted => document.querySelector('#status').textContent === wanted", arg=wanted, timeout=timeout
    )


async def stored_cells(owner: Page, api_server: KitServer) -> list[tuple[int, int]]:
    """The loop's steps as the server's REST API has them, read with the owner's token."""
    loop_id = await owner.evaluate("window.demo.loop.id")
    token = await owner.evaluate("window.demo.client.session.getAccessToken()")
    url, headers = f"{api_server.url}/api/loops/{loop_id}", {"Authorization": f"Bearer {token}"}
    response = await asyncio.to_thread(requests.get, url, headers=headers, timeout=10)
    return sorted((s["step"], s["row"]) for s in response.json()["iconSequence"])


@pytest.mark.timeout(900)  # two server starts, which a loaded machine makes slow
async def test_owner_and_guest_in_one_browser_context(
    context: BrowserContext, demo_server: str, api_server: KitServer, tmp_path: Path
) -> None:
    owner = await context.new_page()
    await owner.goto(f"{demo_server}?server={api_server.url}")
    await wait_status(owner, "synced")
    assert await owner.locator("#role").inner_text() == "owner"
    await owner.locator("#viewer-link").wait_for()
    guest_url = await owner.locator("#viewer-link").get_attribute("href")
    assert guest_url is not None and "share=" in guest_url

    guest = await context.new_page()
    sent_by_guest: list[str] = []

    def record(ws: WebSocket) -> None:
        ws.on("framesent", lambda payload: sent_by_guest.append(str(payload)))

    guest.on("websocket", record)
    await guest.goto(guest_url)
    await wait_status(guest, "synced")
    assert await guest.locator("#role").inner_text() == "viewer"

    # The owner's toggles appear in the guest's page within a second.
    for step, row in [(0, 0), (4, 1), (8, 3)]:
        await cell(owner, step, row).click()
        await guest.wait_for_function(
            "([s, r]) => document.querySelector(`#grid button[data-step='${s}'][data-row='${r}']`)"
            ".getAttribute('aria-pressed') === 'true'",
            arg=[step, row],
            timeout=LIVE_WITHIN_MS,
        )

    # The guest's clicks are refused in its page and go nowhere.
    await cell(guest, 2, 2).click()
    await cell(guest, 0, 0).click()
    assert "refused" in await guest.locator("#refusals").inner_text()
    assert await cell(guest, 2, 2).get_attribute("aria-pressed") == "false"
    assert await cell(guest, 0, 0).get_attribute("aria-pressed") == "true"
    await owner.wait_for_timeout(500)
    assert await cell(owner, 2, 2).get_attribute("aria-pressed") == "false"
    assert await cell(owner, 0, 0).get_attribute("aria-pressed") == "true"
    assert not [frame for frame in sent_by_guest if "sync-update" in frame]
    assert await stored_cells(owner, api_server) == [(0, 0), (4, 1), (8, 3)]

    # The server goes down (SIGTERM); the owner keeps toggling; it comes back; both reconnect.
    await asyncio.to_thread(api_server.server.terminate)
    await wait_status(owner, "offline")
    await wait_status(guest, "offline")
    await cell(owner, 12, 2).click()
    await cell(owner, 0, 0).click()  # off again
    await asyncio.to_thread(api_server.server.start, 180)
    await wait_status(owner, "synced", timeout=120_000)
    await wait_status(guest, "synced", timeout=120_000)
    await guest.wait_for_function(
        "document.querySelector(`#grid button[data-step='12'][data-row='2']`).getAttribute('aria-pressed')"
        " === 'true' && document.querySelector(`#grid button[data-step='0'][data-row='0']`)"
        ".getAttribute('aria-pressed') === 'false'",
        timeout=30_000,
    )
    await owner.wait_for_function("!window.demo.loop.hasUnsyncedChanges", timeout=30_000)
    assert await stored_cells(owner, api_server) == [(4, 1), (8, 3), (12, 2)]

    # A second tab of the owner (same browser, same account): both tabs edit one loop.
    second = await context.new_page()
    await second.goto(await owner.locator("#editor-link").get_attribute("href") or "")
    await wait_status(second, "synced")
    assert await second.locator("#role").inner_text() == "owner"
    await cell(second, 15, 0).click()
    await owner.wait_for_function(
        "document.querySelector(`#grid button[data-step='15'][data-row='0']`).getAttribute('aria-pressed')"
        " === 'true'",
        timeout=LIVE_WITHIN_MS,
    )

    # Both tabs find the access token expired at once: one refresh for the two (Web Locks), and
    # the rotated refresh token keeps working (a replayed one would end the session).
    refreshes: list[str] = []

    def note(request: Request) -> None:
        if request.url.endswith("/api/auth/refresh") and request.method == "POST":
            refreshes.append(request.url)

    context.on("request", note)
    user_id = await owner.evaluate("window.demo.client.session.user.id")
    expired = api_server.act("mint-token", {"userId": user_id, "expiresIn": -5})["token"]
    key = f"musicplayground:session:{api_server.url}"
    await owner.evaluate(
        "([key, token]) => { const s = JSON.parse(localStorage.getItem(key));"
        " localStorage.setItem(key, JSON.stringify({ ...s, token, refreshAt: 0 })) }",
        [key, expired],
    )
    me = "window.demo.client.api.users.me().then((u) => u.id)"
    assert await asyncio.gather(owner.evaluate(me), second.evaluate(me)) == [user_id, user_id]
    assert len(refreshes) == 1
    await second.evaluate("window.demo.client.session.refresh()")
    assert len(refreshes) == 2
    assert await owner.evaluate(me) == user_id

    shots = [tmp_path / "owner.png", tmp_path / "guest.png"]
    assert not [frame for frame in sent_by_guest if "sync-update" in frame]
    await owner.screenshot(path=str(shots[0]))
    await guest.screenshot(path=str(shots[1]))
    _side_by_side(shots, Path(os.environ.get("KIT_SCREENSHOT", tmp_path / "kit-screenshot.png")))


def _side_by_side(shots: list[Path], out: Path) -> None:
    images = [Image.open(path) for path in shots]
    width = sum(image.width for image in images) + 16 * (len(images) - 1)
    height = max(image.height for image in images)
    canvas = Image.new("RGB", (width, height), "white")
    x = 0
    for image in images:
        canvas.paste(image, (x, 0))
        x += image.width + 16
    canvas.save(out)
