"""SQLite is single-instance: a second ``serve`` on the same database file is refused.

Two processes on one SQLite file would each keep their own live documents with no bus
between them (the very lost-edit bug the bus exists for). The first ``serve`` holds an
exclusive ``flock`` on a file next to the database for as long as it runs; the lock goes
away with the process, even on SIGKILL.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AlreadyServing(RuntimeError):
    """Another process serves this SQLite database."""


def sqlite_path(database_url: str) -> Path | None:
    """The file of a ``sqlite+aiosqlite:///path`` URL (None for other databases or memory)."""
    prefix = "sqlite+aiosqlite:///"
    if not database_url.startswith(prefix) or database_url.endswith(":memory:"):
        return None
    return Path(database_url[len(prefix) :])


@contextmanager
def only_instance(database: Path) -> Iterator[None]:
    """Hold the serve lock of ``database``; raise AlreadyServing if another process has it."""
    database.parent.mkdir(parents=True, exist_ok=True)
    lock = database.with_name(database.name + ".serve-lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise AlreadyServing(
            f"another `musicplayground serve` is already running on {database}. SQLite serves one "
            "instance only; to run several, use Postgres (DATABASE_URL) and Redis (REDIS_URL)."
        ) from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
