"""How users appear to collaborators: shown names, read in batches and cached while the bus is up."""

from __future__ import annotations

import asyncio
import uuid

from cachetools import TTLCache

from bus import Bus, BusState
from storage.database import Database
from storage.users import shown_names

MAX_NAMES_PER_READ = 500  # users whose shown names one read asks for (joins of one loop turn)


class ShownNames:
    """The shown name of each user joining a room, so a join storm asks the database once
    per user, not once per socket.

    Names asked for and not yet read are read together: one query reads all that a loop
    turn asked for (a join storm of 200 sockets is a few queries, not 200), and concurrent
    joins of one user share its lookup. Answers are cached for ``ttl`` seconds, dropped on
    every instance when a user changes (``forget``, announced on the bus by the document
    service), and trusted only while the bus is up, like the read cache.
    """

    def __init__(self, db: Database, bus: Bus, *, ttl: float) -> None:
        self._db = db
        self._bus = bus
        self._cache: TTLCache[uuid.UUID, str] = TTLCache(maxsize=10_000, ttl=ttl)
        self._wanted: dict[uuid.UUID, asyncio.Future[str | None]] = {}
        self._reads: set[asyncio.Task[None]] = set()
        self._generation = 0  # bumped by every change, so a racing read is not kept

    def cached(self, user_id: uuid.UUID) -> str | None:
        """The cached name of a user, if any (whether or not the bus is up)."""
        return self._cache.get(user_id)

    async def shown_name(self, user_id: uuid.UUID) -> str | None:
        """How the user appears to collaborators; None if the account no longer exists."""
        trusted = self._bus.state is BusState.UP
        name = self._cache.get(user_id) if trusted else None
        if name is not None:
            return name
        lookup = self._wanted.get(user_id)
        if lookup is None:
            if not self._wanted:
                asyncio.get_running_loop().call_soon(self._read_wanted)
            lookup = self._wanted[user_id] = asyncio.get_running_loop().create_future()
        return await asyncio.shield(lookup)

    def forget(self, user_id: uuid.UUID | None) -> None:
        """Drop one user's cached name (None: everyone's)."""
        self._generation += 1
        if user_id is None:
            self._cache.clear()
        else:
            self._cache.pop(user_id, None)

    def _read_wanted(self) -> None:
        wanted, self._wanted = self._wanted, {}
        ids = list(wanted)
        for start in range(0, len(ids), MAX_NAMES_PER_READ):  # bound the query's parameters
            chunk = {user_id: wanted[user_id] for user_id in ids[start : start + MAX_NAMES_PER_READ]}
            task = asyncio.ensure_future(self._read(chunk))
            self._reads.add(task)  # owned until done
            task.add_done_callback(self._reads.discard)

    async def _read(self, wanted: dict[uuid.UUID, asyncio.Future[str | None]]) -> None:
        generation = self._generation
        try:
            names = await shown_names(self._db, list(wanted))
        except BaseException as exc:
            for future in wanted.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()  # retrieved: each waiter re-raises it
            if not isinstance(exc, Exception):
                raise
            return
        # Not kept if a user changed meanwhile (the read may predate the change).
        keep = self._bus.state is BusState.UP and generation == self._generation
        for user_id, future in wanted.items():
            name = names.get(user_id)
            if name is not None and keep:
                self._cache[user_id] = name
            if not future.done():
                future.set_result(name)
