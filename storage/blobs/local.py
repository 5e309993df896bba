"""Blobs as files under a directory (the embedded default); the app serves them itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from storage.blobs.base import (
    CHUNK_SIZE,
    CONTENT_TYPE_BY_EXTENSION,
    BlobInfo,
    BlobNotFound,
    BlobStore,
    check_key,
)


def file_etag(stat: os.stat_result) -> str:
    # The same shape aiohttp's FileResponse sends, so stat() and the served file agree.
    return f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'


class LocalBlobStore(BlobStore):
    """Objects are files ``root/<key>``, written to a temporary name and renamed into place."""

    name = "local"

    def __init__(self, root: Path, *, base_url: str) -> None:
        self.root = root
        self.base_url = base_url.rstrip("/")
        self._started = False

    async def start(self) -> None:
        await asyncio.to_thread(self._tmp_dir().mkdir, parents=True, exist_ok=True)
        self._started = True

    async def stop(self) -> None:
        self._started = False

    async def check(self) -> None:
        incoming = self._tmp_dir()
        if not await asyncio.to_thread(os.access, incoming, os.W_OK):
            raise OSError(f"{incoming} is not writable")

    def _tmp_dir(self) -> Path:
        return self.root / ".incoming"

    def path(self, key: str) -> Path:
        """The file of ``key`` (which may not exist)."""
        if not self._started:
            raise RuntimeError("LocalBlobStore is not started")
        return self.root.joinpath(*PurePosixPath(check_key(key)).parts)

    async def put(self, key: str, source: BinaryIO, *, size: int, content_type: str) -> None:
        target = self.path(key)
        tmp = self._tmp_dir() / f"{secrets.token_hex(16)}.part"

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            remaining = size
            with tmp.open("wb") as out:
                while remaining > 0:
                    chunk = source.read(min(CHUNK_SIZE, remaining))
                    if not chunk:
                        raise ValueError(f"source ended {remaining} bytes short of {size}")
                    out.write(chunk)
                    remaining -= len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)

        try:
            await asyncio.to_thread(write)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.shield(asyncio.to_thread(tmp.unlink))
            raise

    async def stat(self, key: str) -> BlobInfo:
        path = self.path(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        content_type = CONTENT_TYPE_BY_EXTENSION.get(path.suffix, "application/octet-stream")
        return BlobInfo(size=st.st_size, content_type=content_type, etag=file_etag(st))

    async def open(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self.path(key)
        try:
            fh = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        try:
            await asyncio.to_thread(fh.seek, start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                chunk = await asyncio.to_thread(fh.read, want)
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(fh.close)

    async def delete(self, key: str) -> None:
        path = self.path(key)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)

    async def url(self, key: str) -> str:
        return f"{self.base_url}/{check_key(key)}"
