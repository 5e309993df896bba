"""Public pages benchmark: rendering, link previews and live following, on a real server.

    uv run python -m bench.pages [--runs 20] [--out bench/results/pages.json]

Starts ``musicplayground serve`` (SQLite, fresh data dir, PUBLIC_BASE_URL its own address),
makes a loop at its bounds (8 bars, 2,048 steps on 2,048 sounds, 32 chords) and shares it, then:

1. the page: ``--runs`` renders of a new version each (the name edited in between, so the
   ETag is new and nothing is cached), a cached answer, and a 304: time to the last byte, and
   the HTML's size;
2. the preview PNG: the first request (it starts the CPU worker process), ``--runs`` renders
   of new versions, and cached answers;
3. live following: the page open in Debian's chromium (Playwright), a collaborator's socket
   (``loadtest.client.CollabClient``) adds one step at a time; the time from the edit being
   sent until the page shows the new cell.

Targets (issue 30): a 2,048-step page's HTML <= 300 KB; a 304 without rendering; an edit on
the page within 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import async_playwright

from bench.common import Server, anonymous_token, fmt, git_commit, latency_summary, machine_info, print_rows
from loadtest.client import CollabClient
from music.writing import apply_loop_content

OUT = Path("bench/results/pages.json")


def maximal_loop() -> dict[str, Any]:
    steps = [{"step": i % 64, "soundId": f"sound-{i:04d}", "velocity": (i % 5) / 4} for i in range(2048)]
    chords = [{"bar": beat, "chord": "C maj7"} for beat in range(32)]
    return {"name": "Bench", "length": 8, "bpm": 120, "chordProgression": chords, "iconSequence": steps}


async def timed_get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[float, int, bytes]:
    started = time.perf_counter()
    async with session.get(url, **kwargs) as resp:
        body = await resp.read()
        return time.perf_counter() - started, resp.status, body


async def run(runs: int) -> dict[str, Any]:
    server = Server("sqlite", None)
    server.extra_env["PUBLIC_BASE_URL"] = server.base_url
    await server.start()
    base = server.base_url
    try:
        async with aiohttp.ClientSession() as session:
            token = await anonymous_token(session, base)
            auth = {"Authorization": f"Bearer {token}"}
            async with session.post(f"{base}/api/loops", json=maximal_loop(), headers=auth) as resp:
                loop = await resp.json()
            async with session.post(f"{base}/api/loops/{loop['id']}/share", json={}, headers=auth) as resp:
                share = (await resp.json())["shareToken"]
            page_url, png_url = f"{base}/loop/{share}", f"{base}/preview/{share}.png"

            async def new_version(i: int) -> None:
                body = {"name": f"Bench {i}"}
                async with session.patch(f"{base}/api/loops/{loop['id']}", json=body, headers=auth) as resp:
                    assert resp.status == 200, await resp.text()

            first_png, status, _ = await timed_get(session, png_url)
            assert status == 200
            renders, pngs, sizes = [], [], []
            for i in range(runs):
                await new_version(i)
                seconds, status, body = await timed_get(session, page_url)
                assert status == 200
                renders.append(seconds)
                sizes.append(len(body))
                seconds, status, _ = await timed_get(session, png_url)
                assert status == 200
                pngs.append(seconds)
            cached = [(await timed_get(session, page_url))[0] for _ in range(runs)]
            etag = ""
            async with session.get(page_url) as resp:
                etag = resp.headers["ETag"]
            not_modified = []
            for _ in range(runs):
                seconds, status, _ = await timed_get(session, page_url, headers={"If-None-Match": etag})
                assert status == 304
                not_modified.append(seconds)
            png_cached = [(await timed_get(session, png_url))[0] for _ in range(runs)]
        live = await live_following(base, loop["id"], share, auth["Authorization"].split()[1], runs)
    finally:
        await server.stop()
    return {
        "page_render_ms": latency_summary(renders),
        "page_cached_ms": latency_summary(cached),
        "page_304_ms": latency_summary(not_modified),
        "page_bytes": max(sizes),
        "preview_first_s": first_png,
        "preview_render_ms": latency_summary(pngs),
        "preview_cached_ms": latency_summary(png_cached),
        "live_edit_to_page_ms": latency_summary(live),
    }


async def live_following(base: str, loop_id: str, share: str, token: str, runs: int) -> list[float]:
    """Seconds from a collaborator's edit sent until the open page draws it."""
    found = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = await browser.new_page()
        await page.goto(f"{base}/loop/{share}")
        for _ in range(400):
            if await page.evaluate("window.musicPage && window.musicPage.state.live === 'live'"):
                break
            await asyncio.sleep(0.05)
        async with CollabClient(base, "loop", loop_id, token=token) as editor:
            content = maximal_loop()
            content["iconSequence"] = []
            for i in range(runs):
                content["iconSequence"].append({"step": i % 128, "soundId": "drum-kick"})
                apply_loop_content(editor.doc, content, fields=["iconSequence"])
                sent = time.perf_counter()
                drawn = len(content["iconSequence"])
                shown = f"document.querySelectorAll('svg.grid g.steps rect').length === {drawn}"
                for _ in range(2000):  # polled every 5 ms, for at most 10 s
                    if await page.evaluate(shown):
                        break
                    await asyncio.sleep(0.005)
                found.append(time.perf_counter() - sent)
        await browser.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    results = asyncio.run(run(args.runs))
    results.update(machine=machine_info(), commit=git_commit(), runs=args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    ms = 1000.0
    rows = [["measure (ms)", "p50", "p95", "max"]]
    for key in (
        "page_render_ms",
        "page_cached_ms",
        "page_304_ms",
        "preview_render_ms",
        "preview_cached_ms",
        "live_edit_to_page_ms",
    ):
        summary = results[key]
        rows.append([key, *(fmt(summary.get(q), 1) for q in ("p50", "p95", "max"))])
    print_rows(rows)
    print(
        f"page HTML: {results['page_bytes']} bytes; first preview: {results['preview_first_s'] * ms:.0f} ms"
    )


if __name__ == "__main__":
    main()
