"""Screenshots of the public pages for the docs (docs/screenshots/), from a real server.

    scripts/screenshots [output directory]

Starts ``musicplayground serve`` on the embedded default (SQLite in a temporary directory, a
free port), creates the composer fixture's loops (tests/fixtures/composer-localstorage.json)
and its song, shares the first loop and the song, and saves with Debian's chromium
(Playwright, the browser tests' launch options): the loop page, the song page, the embed,
the link preview picture (fetched as served, 1200x630), and the loop page at 320 px wide and
in the dark scheme. Each PNG is kept under ``MAX_BYTES`` (reduced to a palette if needed).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
from PIL import Image
from playwright.async_api import Browser, async_playwright

from tests.browser.chromium import CHROMIUM, FLAGS

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "composer-localstorage.json"
OUT = ROOT / "docs" / "screenshots"
MAX_BYTES = 300_000  # documentation pictures stay small in the repository
START_TIMEOUT = 180  # a loaded 2-core machine can take half a minute just to import the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "SECRET_KEY": "screenshots-secret-key-that-is-long-enough-0123456789",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PUBLIC_BASE_URL": base,  # og:image and sample URLs the browser can reach
        "RATE_LIMITS": "off",
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "off",
    }
    log = data_dir.parent / "server.log"
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "musicplayground", "serve"], env=env, stdout=output, stderr=output
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc
        except requests.RequestException:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not become healthy")


def call(method: str, url: str, token: str | None = None, body: Any = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.request(method, url, json=body, headers=headers, timeout=30)
    if response.status_code >= 300:
        raise SystemExit(f"{method} {url}: {response.status_code} {response.text}")
    return response.json()


def share_fixture(base: str) -> tuple[str, str]:
    """The fixture's loops (public, so the song's blocks show their names) and song, as the
    composer wrote them (the API takes its ``bars`` / ``bar`` spellings); the share tokens of
    the first loop and of the song."""
    fixture = json.loads(FIXTURE.read_text())
    token = call("POST", f"{base}/api/auth/anonymous")["token"]
    ids: dict[str, str] = {}
    for local_id, loop in fixture["music-playground:loops"].items():
        ids[local_id] = call("POST", f"{base}/api/loops", token, {**loop, "isPublic": True})["id"]
    (song,) = fixture["music-playground:songs"].values()
    timeline = [{**block, "loopId": ids[block["loopId"]]} for block in song["timeline"]]
    song_id = call("POST", f"{base}/api/songs", token, {**song, "timeline": timeline})["id"]
    loop_id = next(iter(ids.values()))
    loop_token = call("POST", f"{base}/api/loops/{loop_id}/share", token, {"expiresIn": None})["shareToken"]
    song_token = call("POST", f"{base}/api/songs/{song_id}/share", token, {"expiresIn": None})["shareToken"]
    return loop_token, song_token


def save(png: bytes, path: Path) -> None:
    """Write ``png``, re-encoded with a palette when it would be over ``MAX_BYTES``."""
    image = Image.open(io.BytesIO(png))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    if buffer.tell() > MAX_BYTES:
        buffer = io.BytesIO()
        image.convert("RGB").quantize(colors=128).save(buffer, "PNG", optimize=True)
    if buffer.tell() > MAX_BYTES:
        raise SystemExit(f"{path.name}: {buffer.tell()} bytes, over {MAX_BYTES}")
    path.write_bytes(buffer.getvalue())
    print(f"{path} {image.width}x{image.height} {buffer.tell():,} bytes")


async def shoot(browser: Browser, url: str, path: Path, width: int, height: int, **options: Any) -> None:
    context = await browser.new_context(
        viewport={"width": width, "height": height}, device_scale_factor=1, **options
    )
    try:
        page = await context.new_page()
        response = await page.goto(url)
        if response is None or response.status != 200:
            raise SystemExit(f"{url}: {response.status if response else 'no answer'}")
        # Polled from here: the pages' CSP refuses the eval Playwright's wait_for_function uses.
        deadline = time.monotonic() + 30
        while not await page.evaluate("Boolean(window.musicPage && window.musicPage.ready)"):
            if time.monotonic() > deadline:
                raise SystemExit(f"{url}: the player never got ready")
            await asyncio.sleep(0.05)
        await page.evaluate("document.fonts.ready.then(() => true)")
        save(await page.screenshot(full_page=True), path)
    finally:
        await context.close()


async def pages(base: str, loop_token: str, song_token: str, out: Path) -> None:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            loop_url = f"{base}/loop/{loop_token}"
            await shoot(browser, loop_url, out / "loop-page.png", 1200, 480, color_scheme="light")
            await shoot(browser, f"{base}/song/{song_token}", out / "song-page.png", 1100, 380)
            await shoot(browser, f"{base}/embed/{loop_token}", out / "embed.png", 560, 260)
            await shoot(browser, loop_url, out / "loop-320px.png", 320, 640, color_scheme="light")
            await shoot(browser, loop_url, out / "loop-dark.png", 1200, 480, color_scheme="dark")
        finally:
            await browser.close()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mp-screenshots-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = start_server(data_dir, port)
        try:
            loop_token, song_token = share_fixture(base)
            preview = requests.get(f"{base}/preview/{loop_token}.png", timeout=60)
            preview.raise_for_status()
            save(preview.content, out / "preview.png")
            asyncio.run(pages(base, loop_token, song_token, out))
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
