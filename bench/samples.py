"""Sample upload benchmark: 5 MB uploads end to end on loopback, local disk and S3.

    uv run python -m bench.samples [--backends local,s3] [--runs 20] [--parallel 10]
                                   [--out bench/results/samples.json]

For each blob backend it starts a real server process (``musicplayground serve``, SQLite,
fresh data dir; for ``s3`` a real moto S3 server on loopback and a fresh bucket), then:

1. ``--runs`` sequential uploads of one 5 MiB (5 x 1024 x 1024 bytes) PCM WAV, each timed
   from the first byte sent to the 201 answer: p50 / p95 / max;
2. the server's idle RSS (after the runs, nothing in flight), then ``--parallel`` uploads
   of the same file at once while /proc/<pid>/status is sampled every 2 ms: peak RSS and
   its growth over idle. (The kernel's own peak, VmHWM, is reset through
   /proc/<pid>/clear_refs first and reported too when the kernel allows it.)

Targets (DESIGN.md): < 1 s per 5 MB upload, RSS growth < 20 MB during 10 parallel uploads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

import aioboto3
import aiohttp

from bench.common import (
    Server,
    anonymous_token,
    fmt,
    git_commit,
    git_dirty,
    latency_summary,
    machine_info,
    print_rows,
    proc_status_kb,
)
from tests.services import s3_server

FILE_BYTES = 5 * 1024 * 1024
TARGET_P50_S = 1.0
TARGET_RSS_GROWTH_MB = 20.0
S3_KEYS = {"S3_ACCESS_KEY_ID": "bench-access-key", "S3_SECRET_ACCESS_KEY": "bench-secret-key"}


def five_mib_wav() -> bytes:
    """A 16-bit mono 44.1 kHz PCM WAV of exactly 5 MiB (noise, so nothing compresses it)."""
    data = os.urandom(FILE_BYTES - 44)
    fmt_chunk = struct.pack("<HHIIHH", 1, 1, 44_100, 88_200, 2, 16)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt_chunk + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


async def upload_once(http: aiohttp.ClientSession, base: str, token: str, wav: bytes) -> float:
    form = aiohttp.FormData()
    form.add_field("file", wav, filename="bench.wav", content_type="audio/wav")
    started = time.perf_counter()
    async with http.post(
        base + "/api/samples/upload", data=form, headers={"Authorization": f"Bearer {token}"}
    ) as resp:
        body = await resp.read()
        elapsed = time.perf_counter() - started
        if resp.status != 201:
            raise RuntimeError(f"upload -> {resp.status}: {body[:300]!r}")
    return elapsed


def _reset_peak(pid: int) -> bool:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    return False


async def run_backend(backend: str, runs: int, parallel: int, wav: bytes) -> dict[str, Any]:
    with contextlib.ExitStack() as stack:
        env: dict[str, str] = {}
        if backend == "s3":
            endpoint = stack.enter_context(s3_server())
            bucket = f"mp-bench-{os.urandom(6).hex()}"
            async with aioboto3.Session().client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id=S3_KEYS["S3_ACCESS_KEY_ID"],
                aws_secret_access_key=S3_KEYS["S3_SECRET_ACCESS_KEY"],
            ) as s3:
                await s3.create_bucket(Bucket=bucket)
            env = {"S3_BUCKET": bucket, "S3_ENDPOINT_URL": endpoint, **S3_KEYS}
        server = Server("sqlite", None, extra_env=env)
        await server.start()
        try:
            async with aiohttp.ClientSession() as http:
                warm = await anonymous_token(http, server.base_url)
                await upload_once(http, server.base_url, warm, wav)  # imports, pools, first file
                # One account per batch: the 100 MiB quota holds exactly 20 files of 5 MiB.
                timings = []
                for start in range(0, runs, 20):
                    token = await anonymous_token(http, server.base_url)
                    for _ in range(min(20, runs - start)):
                        timings.append(await upload_once(http, server.base_url, token, wav))
                await asyncio.sleep(1.0)
                idle_kb = server.rss_kb() or 0
                hwm_reset = _reset_peak(server.pid)
                token = await anonymous_token(http, server.base_url)
                samples: list[int] = []
                done = asyncio.Event()

                async def sample_rss() -> None:
                    while not done.is_set():
                        samples.append(server.rss_kb() or 0)
                        await asyncio.sleep(0.002)

                sampler = asyncio.create_task(sample_rss())
                started = time.perf_counter()
                parallel_times = await asyncio.gather(
                    *(upload_once(http, server.base_url, token, wav) for _ in range(parallel))
                )
                wall = time.perf_counter() - started
                done.set()
                await sampler
                hwm_kb = proc_status_kb(server.pid, "VmHWM") if hwm_reset else None
        finally:
            await server.stop()
    peak_kb = max([*samples, hwm_kb or 0])
    return {
        "backend": backend,
        "file_bytes": len(wav),
        "sequential": {"runs": len(timings), **latency_summary(timings)},
        "parallel": {
            "uploads": parallel,
            "wall_s": round(wall, 3),
            **latency_summary(parallel_times),
            "idle_rss_mb": round(idle_kb / 1024, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1),
            "rss_growth_mb": round((peak_kb - idle_kb) / 1024, 1),
            "rss_samples": len(samples),
            "kernel_peak_used": hwm_kb is not None,
        },
        "targets": {
            "p50_under_1s": (latency_summary(timings)["p50"] or 1e9) < TARGET_P50_S * 1000,
            "rss_growth_under_20mb": (peak_kb - idle_kb) / 1024 < TARGET_RSS_GROWTH_MB,
        },
    }


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="local,s3")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results/samples.json"))
    args = parser.parse_args(argv)
    wav = five_mib_wav()
    results = [await run_backend(b, args.runs, args.parallel, wav) for b in args.backends.split(",")]
    report = {
        "benchmark": "samples",
        "commit": git_commit(),
        "dirty": git_dirty(),
        "machine": machine_info(),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    rows = [
        ["backend", "p50 ms", "p95 ms", "max ms", "idle RSS MB", "peak RSS MB", "growth MB", "10x wall s"]
    ]
    for r in results:
        s, p = r["sequential"], r["parallel"]
        rows.append(
            [
                r["backend"],
                fmt(s["p50"], 1),
                fmt(s["p95"], 1),
                fmt(s["max"], 1),
                fmt(p["idle_rss_mb"], 1),
                fmt(p["peak_rss_mb"], 1),
                fmt(p["rss_growth_mb"], 1),
                fmt(p["wall_s"], 2),
            ]
        )
    print_rows(rows)
    print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
