"""Sockets opened with a share token lose the room when the link expires.

Revocation calls ``DocumentService.access_changed`` directly; expiry has no request to hang
off, so this watcher looks for links that expired since its last look and has the rooms of
their documents re-check every session's role (which disconnects with ``access_revoked``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

from music.kinds import DocKind
from realtime.service import DocumentService
from storage.database import Database
from storage.models import utcnow
from storage.sharing import shares_expired_between

log = logging.getLogger(__name__)


class ShareExpiryWatcher:
    def __init__(self, db: Database, documents: DocumentService, *, interval: float = 1.0) -> None:
        self.db = db
        self.documents = documents
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def check(self, since: datetime) -> datetime:
        """Re-check the rooms of documents whose links expired after ``since``; returns now."""
        now = utcnow()
        if self.documents.rooms:  # nobody connected here: nothing to disconnect
            async with self.db.session() as session:
                expired = await shares_expired_between(session, after=since, until=now)
            for resource_type, resource_id in expired:
                await self.documents.access_changed(DocKind(resource_type), resource_id)
        return now

    async def _run(self) -> None:
        since = utcnow()
        while True:
            await asyncio.sleep(self.interval)
            try:
                since = await self.check(since)
            except Exception:
                log.exception("checking for expired share links failed; will retry")

    async def __aenter__(self) -> ShareExpiryWatcher:
        self._task = asyncio.create_task(self._run(), name="share-expiry")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
