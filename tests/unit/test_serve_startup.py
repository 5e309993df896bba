"""What ``musicplayground serve`` does once the app has started."""

from __future__ import annotations

import gc

from aiohttp import web

from musicplayground import cli


async def test_startup_objects_leave_the_garbage_collectors_reach() -> None:
    gc.unfreeze()
    try:
        await cli._freeze_startup_objects(web.Application())
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the imported modules and the app, at least
        # What serving creates afterwards is still tracked, and collected.
        garbage: list[object] = []
        garbage.append(garbage)  # a reference cycle
        assert gc.is_tracked(garbage)
        del garbage
        assert gc.collect() >= 1
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
