"""The blob store contract every backend implements (tested by one parametrized suite)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import BinaryIO, Self

# Bytes read or yielded at a time: bounded, so memory stays flat whatever the file size.
CHUNK_SIZE = 64 * 1024
# Keys are ours (random hex + an extension we chose): a strict shape keeps any path or
# URL trick out of the backends.
KEY_PATTERN = re.compile(r"[a-z0-9]+(/[a-z0-9]+)*(\.[a-z0-9]{1,8})?")  # fullmatch: the whole key
MAX_KEY_LENGTH = 256


class BlobNotFound(LookupError):
    """No object under this key."""


@dataclass(frozen=True)
class BlobInfo:
    size: int
    content_type: str
    etag: str


def check_key(key: str) -> str:
    if len(key) > MAX_KEY_LENGTH or not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"invalid blob key {key!r}")
    return key


@dataclass(frozen=True)
class S3Config:
    """Where and how the S3 backend stores (values only: the backend, and aioboto3, are imported
    when a store is opened)."""

    bucket: str
    endpoint_url: str | None = None
    region: str = "auto"
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    public_base_url: str | None = None
    presign_ttl: int = 3600
    part_size: int = 8 * 1024 * 1024


class BlobStore(ABC):
    """Bytes in, bytes out, by key. Use as ``async with store:`` (misuse fails loudly)."""

    name: str

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:  # noqa: B027 - backends without a connection need nothing
        """Open connections (called once, before any other method)."""

    async def stop(self) -> None:  # noqa: B027
        """Close connections."""

    @abstractmethod
    async def put(self, key: str, source: BinaryIO, *, size: int, content_type: str) -> None:
        """Store ``size`` bytes read from ``source`` (a seekable file at offset 0) under ``key``.

        Either the whole object is stored or nothing is (a failed or cancelled put leaves
        no object behind).
        """

    @abstractmethod
    async def stat(self, key: str) -> BlobInfo:
        """Size, type and ETag of the object; raises :class:`BlobNotFound`."""

    @abstractmethod
    def open(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Yield the bytes ``start`` .. ``end`` (inclusive; ``None`` = to the end) in chunks.

        Raises :class:`BlobNotFound` (on the first iteration) for an unknown key.
        """

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""

    @abstractmethod
    async def check(self) -> None:
        """Raise if the store cannot take objects right now (readiness)."""

    @abstractmethod
    async def url(self, key: str) -> str:
        """A URL a browser can fetch the object from (public, or signed with a bounded lifetime)."""


# The content types this server stores, by key extension. The local backend serves a file
# with the type of its extension; callers name keys with the extension of the type.
CONTENT_TYPE_BY_EXTENSION = {".wav": "audio/wav", ".mp3": "audio/mpeg"}
EXTENSION_BY_CONTENT_TYPE = {v: k for k, v in CONTENT_TYPE_BY_EXTENSION.items()}
