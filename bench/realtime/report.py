"""Printing results: edit tables and the per-preset report."""

from __future__ import annotations

from typing import Any

from bench.common import (
    fmt,
    print_rows,
)


def print_edit_line(r: dict[str, Any]) -> None:
    lat = r["latency_ms"]
    print(
        f"  {r['label']}: {r['deliveries_per_s']:,.0f}/{r['offered_deliveries_per_s']:,.0f} deliveries/s, "
        f"p50 {fmt(lat['p50'])} p99 {fmt(lat['p99'])} max {fmt(lat['max'])} ms, "
        f"lost {r['lost_pairs']}, srv CPU {fmt((r['server_cpu_util'] or 0) * 100, 0)}%, "
        f"cli CPU {fmt(r['client_cpu_util'] * 100, 0)}%, other CPU {fmt(r['other_cpu_util'] * 100, 0)}%, "
        f"converged {r['rooms_converged']}/{r['rooms']}",
        flush=True,
    )


def print_edit_table(runs: list[dict[str, Any]]) -> None:
    header = (
        "scenario", "offered/s", "deliv/s", "p50", "p95", "p99", "max", "p99 sched", "lost",
        "conv", "srv CPU%", "ms/1k deliv", "cli CPU%", "other CPU%", "edits/upd", "RSS MB", "pass",
    )  # fmt: skip
    rows = [header]
    for r in runs:
        lat, sched = r["latency_ms"], r["latency_from_scheduled_ms"]
        rows.append(
            (
                r["label"],
                f"{r['offered_deliveries_per_s']:,.0f}",
                f"{r['deliveries_per_s']:,.0f}",
                fmt(lat["p50"], 1),
                fmt(lat["p95"], 1),
                fmt(lat["p99"], 1),
                fmt(lat["max"], 1),
                fmt(sched["p99"], 1),
                str(r["lost_pairs"]),
                f"{r['rooms_converged']}/{r['rooms']}" if r.get("target") != "relay" else "-",
                fmt(None if r["server_cpu_util"] is None else r["server_cpu_util"] * 100, 0),
                fmt(r["server_cpu_ms_per_1000_deliveries"], 1),
                fmt(r["client_cpu_util"] * 100, 0),
                fmt(r["other_cpu_util"] * 100, 0),
                fmt(r["edits_per_received_update"], 2),
                fmt(r["server_rss_mb"], 1),
                "yes" if r["pass_p99"] and r["nothing_lost"] and r["converged"] else "NO",
            )
        )
    print(
        "latencies in ms from the actual send (p99 sched: from the scheduled instant); CPU% of one core "
        "(other: processes outside the benchmark); ms/1k deliv = server CPU ms per 1,000 deliveries"
    )
    print_rows(rows)


def print_report(presets: dict[str, Any]) -> None:
    for name, data in presets.items():
        print(f"\n== {name} ({data.get('backend')}, {data.get('started_at')}) ==")
        if "runs" in data:
            print_edit_table(data["runs"])
        elif name == "idle":
            r = data["result"]
            rows: list[tuple[str, ...]] = [("metric", "value")]
            for key in (
                "connected", "connect_failures", "connect_to_synced_ms", "connect_rate_per_s",
                "server_cpu_ms_per_connect",
                "server_rss_mb_before", "server_rss_mb_one_socket_per_room", "server_rss_mb_all_sockets",
                "server_rss_mb_after_hold", "rss_kb_per_socket_incl_rooms", "rss_kb_per_extra_socket",
                "rss_kb_per_loaded_room_with_one_socket", "server_cpu_util_while_idle", "alive_after_hold",
                "pings_answered", "client_rss_mb",
            ):  # fmt: skip
                value = r[key]
                if isinstance(value, dict):
                    value = (
                        f"p50 {fmt(value['p50'], 1)} p99 {fmt(value['p99'], 1)} max {fmt(value['max'], 1)}"
                    )
                rows.append((key, str(value)))
            print_rows(rows)
        elif name == "open":
            r = data["result"]
            rows = [("open", "total ms", "websocket", "ns connect", "sync", "log rows", "content ok")]
            entries = [
                (f"cold, from log #{n + 1}", t) for n, t in enumerate(r["cold_open_from_log"]["trials"])
            ]
            entries += [
                (f"warm, room loaded #{n + 1}", t) for n, t in enumerate(r["warm_open_room_loaded"]["trials"])
            ]
            entries += [
                (f"cold, from snapshot #{n + 1}", t)
                for n, t in enumerate(r["cold_open_from_snapshot"]["trials"])
            ]
            for label, t in entries:
                rows.append(
                    (
                        label,
                        fmt(t["total_ms"], 1),
                        fmt(t["websocket_ms"], 1),
                        fmt(t["namespace_connect_ms"], 1),
                        fmt(t["sync_ms"], 1),
                        str(t.get("log_rows", "-")),
                        str(t.get("content_ok", "-")),
                    )
                )
            print(f"{r['updates_written']:,} updates written in {r['write_s']} s; log rows at kill "
                  f"{r['log_rows_at_kill']}, after the snapshot {r['log_rows_after_snapshot']}")  # fmt: skip
            print_rows(rows)
        verdict = data.get("verdict") or {}
        if verdict:
            state = "PASS" if verdict.get("pass") else "FAIL"
            details = ", ".join(f"{k} {v}" for k, v in verdict.items() if k not in {"pass", "target"})
            print(f"target: {verdict.get('target', '-')}: {state}" + (f" ({details})" if details else ""))


# --- entry point -----------------------------------------------------------------------------
