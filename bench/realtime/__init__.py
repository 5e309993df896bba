"""Real-time collaboration benchmark: open-loop edit load on a real server process.

    uv run python -m bench.realtime                          # --preset all
    uv run python -m bench.realtime --preset throughput      # 10 rooms x 5 editors, rate sweep
    uv run python -m bench.realtime --preset latency         # 20 rooms x 10 editors x 5 edits/s
    uv run python -m bench.realtime --preset idle            # 5,000 idle sockets: RSS
    uv run python -m bench.realtime --preset open            # open a doc with a 10,000-update log
    uv run python -m bench.realtime --rooms 4 --editors 3 --rate 10 --duration 5   # custom

Workload (DESIGN.md, "Performance targets"): N rooms x M editors; every editor makes a small
edit of the room's shared Yjs document at F edits/s (fixed schedule, open loop) and every
OTHER editor of the room must observe it. Latency is measured per (edit, receiver) pair from
the moment the edit was written to the socket (primary) and from its scheduled instant.

The load client is lean on purpose: raw WebSockets (aiohttp) speaking Engine.IO v4 /
Socket.IO v5 by hand, one pycrdt Doc per editor. An edit sets key ``e<editor>`` of the map
``bench`` to a unique ASCII token ``T<room>:<editor>:<seq>;``; receivers find the tokens in
the raw bytes of every ``sync-update`` (a batched update merged by the server carries
several; merging keeps overwritten values, checked). Rooms are never split across client
processes, so send and receive times come from the same clock and process.

Modules by role: ``wire`` (the hand-written Engine.IO/Socket.IO client), ``workers`` (load
processes, the bare relay), ``runs`` (one measured run, py-spy), ``presets``, ``report`` and
``__main__`` (the command line).
"""
