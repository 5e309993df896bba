"""The presets: edit rate sweeps, idle sockets, opening a long document; their targets."""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    Server,
    ServerError,
    ThrowawayDatabase,
    anonymous_token,
    create_loop,
    latency_summary,
    machine_cpu,
    proc_status_kb,
)
from bench.realtime.report import print_edit_line
from bench.realtime.runs import (
    TARGET_IDLE_RSS_MB,
    TARGET_OPEN_MS,
    TARGET_P99_MS,
    TARGET_THROUGHPUT_DPS,
    Bench,
    run_edit_load,
    start_py_spy,
    stop_py_spy,
)
from bench.realtime.wire import WS_PATH, Conn, perf_counter, unb64_floats
from bench.realtime.workers import LoadClient, WorkerProc

PRESETS: dict[str, dict[str, Any]] = {
    "throughput": {"rooms": 10, "editors": 5, "rates": [20.0, 30.0, 40.0, 50.0, 60.0]},
    "latency": {"rooms": 20, "editors": 10, "rates": [5.0]},
    "idle": {"rooms": 500, "editors": 10},
    "open": {"updates": 10_000},
}
ALL_PRESETS = ("throughput", "latency", "idle", "open")


async def preset_edit(
    args: argparse.Namespace, name: str, rooms_n: int, editors: int, rates: list[float]
) -> dict[str, Any]:
    runs = []
    async with Bench(args) as bench:
        rooms = await bench.seed(rooms_n)
        for rate in rates:
            label = f"{name}-{rooms_n}x{editors}x{rate:g}"
            r = await run_edit_load(bench, rooms, editors, rate, label)
            runs.append(r)
            print_edit_line(r)
            await asyncio.sleep(1.0)
    out: dict[str, Any] = {"runs": runs}
    passing = [r for r in runs if r["pass_p99"] and r["nothing_lost"] and r["converged"]]
    if name == "throughput":
        best = max(passing, key=lambda r: r["deliveries_per_s"], default=None)
        out["verdict"] = {
            "target": (
                f">= {TARGET_THROUGHPUT_DPS:,.0f} deliveries/s at p99 <= {TARGET_P99_MS:g} ms, nothing lost"
            ),
            "max_passing_rate_per_editor": best["rate_per_editor"] if best else None,
            "max_passing_deliveries_per_s": best["deliveries_per_s"] if best else None,
            "pass": bool(best and best["deliveries_per_s"] >= TARGET_THROUGHPUT_DPS * 0.98),
        }
    elif name == "latency":
        r = runs[-1]
        out["verdict"] = {
            "target": f"p99 <= {TARGET_P99_MS:g} ms, every room converged, nothing lost",
            "p99_ms": r["latency_ms"]["p99"],
            "pass": bool(r["pass_p99"] and r["converged"] and r["nothing_lost"]),
        }
    else:
        out["verdict"] = {"pass": bool(runs) and len(passing) == len(runs)}
    return out


async def preset_idle(args: argparse.Namespace, rooms_n: int, editors: int) -> dict[str, Any]:
    """Mostly idle sockets: each connects, syncs, then only answers Engine.IO pings."""
    workers: list[WorkerProc] = []
    async with Bench(args) as bench:
        server = bench.server
        assert server is not None
        rooms = await bench.seed(rooms_n, rooms_per_user=10)
        await asyncio.sleep(1.0)
        rss0 = server.rss_kb() or 0
        connect_cpu0 = server.cpu_seconds()
        try:
            print(f"  idle: {rooms_n} rooms, first socket each ...", flush=True)
            t = perf_counter()
            first, ready_a = await bench.spawn(rooms, [0], 0.0, args.client_procs, "idle-a")
            workers += first
            connect_a_s = perf_counter() - t
            await asyncio.sleep(2.0)
            rss_a = server.rss_kb() or 0
            print(f"  idle: {rooms_n} x {editors - 1} more sockets ...", flush=True)
            t = perf_counter()
            spy = await start_py_spy(args.py_spy, "idle-connect", server.pid, 600) if args.py_spy else None
            rest, ready_b = await bench.spawn(
                rooms, list(range(1, editors)), 0.0, args.client_procs, "idle-b"
            )
            workers += rest
            connect_b_s = perf_counter() - t
            await stop_py_spy(spy, args.py_spy, "idle-connect")
            await asyncio.sleep(2.0)
            rss_b = server.rss_kb() or 0
            readies = ready_a + ready_b
            connected = sum(r["connected"] for r in readies)
            connect_cpu1 = server.cpu_seconds()
            print(f"  idle: {connected} sockets synced; holding {args.idle_hold:g} s ...", flush=True)
            cpu0, mach0 = server.cpu_seconds(), machine_cpu()
            spy = (
                await start_py_spy(args.py_spy, "idle-hold", server.pid, args.idle_hold)
                if args.py_spy
                else None
            )
            await asyncio.sleep(args.idle_hold)
            cpu1, mach1 = server.cpu_seconds(), machine_cpu()
            await stop_py_spy(spy, args.py_spy, "idle-hold")
            rss_c = server.rss_kb() or 0
            hwm = proc_status_kb(server.pid, "VmHWM") or 0
            for w in workers:
                w.send({"cmd": "report"})
            reports = list(await asyncio.gather(*(w.recv(timeout=60) for w in workers)))
            client_rss = sum(proc_status_kb(w.pid, "VmRSS") or 0 for w in workers)
        finally:
            await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
    connect_ms = array.array("d")
    for r in readies:
        connect_ms.extend(unb64_floats(r["connect_ms"]))
    n_b = sum(r["connected"] for r in ready_b)
    hold_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    result = {
        "backend": args.backend,
        "rooms": rooms_n,
        "sockets_per_room": editors,
        "client_procs": len(ready_a),
        "connected": connected,
        "connect_failures": sum(r["failed"] for r in readies),
        "connect_failure_samples": [f for r in readies for f in r["failures"]][:5],
        "connect_to_synced_ms": latency_summary(connect_ms),
        "connect_rate_per_s": round(connected / max(connect_a_s + connect_b_s, 1e-9), 1),
        "server_cpu_ms_per_connect": (
            round((connect_cpu1 - connect_cpu0) * 1000 / max(connected, 1), 2)
            if connect_cpu0 is not None and connect_cpu1 is not None
            else None
        ),
        "server_rss_mb_before": round(rss0 / 1024, 1),
        "server_rss_mb_one_socket_per_room": round(rss_a / 1024, 1),
        "server_rss_mb_all_sockets": round(rss_b / 1024, 1),
        "server_rss_mb_after_hold": round(rss_c / 1024, 1),
        "server_peak_rss_mb": round(hwm / 1024, 1),
        "rss_kb_per_socket_incl_rooms": round((rss_c - rss0) / max(connected, 1), 1),
        "rss_kb_per_extra_socket": round((rss_b - rss_a) / max(n_b, 1), 1),
        "rss_kb_per_loaded_room_with_one_socket": round((rss_a - rss0) / max(rooms_n, 1), 1),
        "hold_s": args.idle_hold,
        "server_cpu_util_while_idle": None if hold_cpu is None else round(hold_cpu / args.idle_hold, 4),
        "machine_cpu_busy_pct": round(100 * (mach1[0] - mach0[0]) / max(mach1[1] - mach0[1], 1e-9), 1),
        "alive_after_hold": sum(r["alive"] for r in reports),
        "pings_answered": sum(r["pings_answered"] for r in reports),
        "server_error_events": sum(r["server_errors"] for r in reports),
        "client_rss_mb": round(client_rss / 1024, 1),
    }
    result["pass"] = (
        result["alive_after_hold"] == rooms_n * editors
        and result["server_rss_mb_after_hold"] < TARGET_IDLE_RSS_MB
    )
    return {
        "result": result,
        "verdict": {
            "target": f"{rooms_n * editors} idle sockets, RSS < {TARGET_IDLE_RSS_MB:g} MB",
            "pass": result["pass"],
        },
    }


async def _count_log_rows(server: Server, pg: ThrowawayDatabase | None) -> int | None:
    query = "SELECT count(*) FROM document_updates"
    if pg is not None:
        return int(await pg.fetchval(query))
    with contextlib.closing(
        sqlite3.connect(f"file:{server.sqlite_path}?mode=ro", uri=True, timeout=10)
    ) as db:
        return int(db.execute(query).fetchone()[0])


async def _timed_open(
    session: aiohttp.ClientSession, url: str, spec: dict[str, Any], index: int
) -> tuple[Conn, dict[str, Any]]:
    conn = Conn(None, 0, index, spec["loop_id"], spec["token"])
    await conn.open(session, url)
    ms = 1000.0
    return conn, {
        "total_ms": round((conn.t_synced - conn.t_start) * ms, 2),
        "websocket_ms": round((conn.t_ws - conn.t_start) * ms, 2),
        "namespace_connect_ms": round((conn.t_connected - conn.t_ws) * ms, 2),
        "sync_ms": round((conn.t_synced - conn.t_connected) * ms, 2),
    }


async def _warm_up(session: aiohttp.ClientSession, url: str, spec: dict[str, Any]) -> None:
    """Make a fresh server process warm (DB pool, code paths) on another, small document."""
    for index in (10, 11):
        conn = Conn(None, 1, index, spec["loop_id"], spec["token"])
        await conn.open(session, url)
        await conn.close()


async def preset_open(args: argparse.Namespace, updates: int) -> dict[str, Any]:
    """Opening a document whose durable log holds ``updates`` entries.

    Server 1 receives the updates (snapshots disabled) and is killed with SIGKILL, so the
    log is never folded. Then, ``trials`` times: a fresh server process on the same data,
    warmed up on another document, measures connect -> synced of the first socket (the room
    loads snapshot + the whole log) and of a second one (room already loaded), and is
    killed again. Last, a server with 1 s snapshots folds the log, unloads the room, and the
    first socket is timed again (the same history, now one snapshot).
    """
    pg = ThrowawayDatabase(args.postgres_url) if args.backend == "postgres" else None
    keys = 64
    trials = 3
    servers: list[Server] = []
    data_dir: Path | None = None
    env = {
        "RT_MAX_MESSAGES_PER_SECOND": str(max(args.max_messages_per_second, 100_000)),
        "RT_MAX_CONNECTIONS_PER_USER": "10000",
        "SNAPSHOT_INTERVAL_SECONDS": "1000000",
        "ROOM_IDLE_SECONDS": "1000000",
    }

    async def start(extra: dict[str, str] | None = None) -> Server:
        first = servers[0] if servers else None
        server = Server(
            args.backend,
            pg.url if pg else None,
            extra_env={**env, **(extra or {})},
            data_dir=first.data_dir if first else None,
            secret=first.secret if first else None,
            keep_data=True,
        )
        servers.append(server)
        await server.start()
        return server

    def url(server: Server) -> str:
        return f"ws://127.0.0.1:{server.port}{WS_PATH}"

    try:
        if pg:
            await pg.create()
        async with aiohttp.ClientSession() as session:
            first = await start()
            data_dir = first.data_dir
            print(f"  open: server on {first.base_url}; writing {updates:,} updates ...", flush=True)
            token = await anonymous_token(session, first.base_url)
            loop_id = await create_loop(session, first.base_url, token, 0, random.Random(1))
            other_id = await create_loop(session, first.base_url, token, 1, random.Random(2))
            spec = {"room": 0, "loop_id": loop_id, "token": token}
            other = {"room": 1, "loop_id": other_id, "token": token}
            client = LoadClient({"url": url(first), "rooms": [{**spec, "indices": [0, 1]}], "apply": True})
            client.build()
            ready = await client.connect_all(session, 2)
            if ready["failed"]:
                raise ServerError(f"open: could not connect: {ready['failures']}")
            writer = client.conns[0]
            expected: dict[str, str] = {}
            t = perf_counter()
            for start_i in range(0, updates, 200):  # in bursts, each relayed (= durable) before the next
                for i in range(start_i, min(start_i + 200, updates)):
                    token_s = f"T0:0:{i};"
                    key = f"k{i % keys}"
                    update = writer.local_edit(key, token_s)
                    writer.send_binary(writer.update_header, update)
                    client.edits[token_s.encode()] = [0.0, perf_counter(), 1, 0, True, writer.bit, 0]
                    client.outstanding += 1
                    expected[key] = token_s
                deadline = perf_counter() + 30
                while client.outstanding > 0 and perf_counter() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                if client.outstanding > 0:
                    raise ServerError(f"open: {client.outstanding} updates never relayed")
            write_s = perf_counter() - t
            log_rows = await _count_log_rows(first, pg)
            print(f"  open: relayed in {write_s:.1f} s; log rows {log_rows}; kill -9", flush=True)
            await first.kill()  # no final snapshot: the log stays as it is
            await client.close()

            from_log: list[dict[str, Any]] = []
            warm: list[dict[str, Any]] = []
            for _ in range(trials):
                server = await start()
                await _warm_up(session, url(server), other)
                label = f"open-cold-from-log-{len(from_log) + 1}"
                spy = (
                    await start_py_spy(args.py_spy, label, server.pid, 5, rate=2000) if args.py_spy else None
                )
                if spy is not None:
                    await asyncio.sleep(1.0)  # attached
                conn, timing = await _timed_open(session, url(server), spec, 5)
                await stop_py_spy(spy, args.py_spy, label)
                timing["content_ok"] = (conn.map.to_py() or {}) == expected
                timing["log_rows"] = await _count_log_rows(server, pg)
                from_log.append(timing)
                conn2, timing2 = await _timed_open(session, url(server), spec, 6)
                warm.append(timing2)
                await server.kill()
                await conn.close()
                await conn2.close()

            server = await start({"SNAPSHOT_INTERVAL_SECONDS": "1", "ROOM_IDLE_SECONDS": "1"})
            await _warm_up(session, url(server), other)
            conn, _ = await _timed_open(session, url(server), spec, 5)
            await conn.close()
            rows_after: int | None = None
            from_snapshot: list[dict[str, Any]] = []
            for attempt in range(trials):
                deadline = perf_counter() + 20
                while perf_counter() < deadline:
                    await asyncio.sleep(0.5)
                    rows_after = await _count_log_rows(server, pg)
                    if rows_after == 0:
                        break
                await asyncio.sleep(3.0)  # ROOM_IDLE_SECONDS=1 + maintenance ticks: unloaded
                conn, timing = await _timed_open(session, url(server), spec, 7 + attempt)
                timing["content_ok"] = (conn.map.to_py() or {}) == expected
                from_snapshot.append(timing)
                await conn.close()
    finally:
        for server in reversed(servers):
            with contextlib.suppress(Exception):
                await server.stop()
        if data_dir is not None:
            shutil.rmtree(data_dir, ignore_errors=True)
        if pg:
            await pg.drop()

    def summary(timings: list[dict[str, Any]]) -> dict[str, Any]:
        totals = sorted(t["total_ms"] for t in timings)
        return {"median_total_ms": totals[len(totals) // 2], "max_total_ms": totals[-1], "trials": timings}

    result = {
        "backend": args.backend,
        "updates_written": updates,
        "distinct_keys": keys,
        "write_s": round(write_s, 2),
        "log_rows_at_kill": log_rows,
        "log_rows_after_snapshot": rows_after,
        "cold_open_from_log": summary(from_log),
        "warm_open_room_loaded": summary(warm),
        "cold_open_from_snapshot": summary(from_snapshot),
    }
    worst = result["cold_open_from_log"]["max_total_ms"]
    ok = all(t["content_ok"] for t in from_log + from_snapshot) and worst < TARGET_OPEN_MS
    return {
        "result": result,
        "verdict": {
            "target": (
                f"open a document with a {updates:,}-update log < {TARGET_OPEN_MS:g} ms (connect to synced)"
            ),
            "cold_open_from_log_worst_ms": worst,
            "pass": ok,
        },
    }


# --- report ----------------------------------------------------------------------------------
