"""One contract for every blob backend: local files and S3 (a real moto server on loopback)."""

from __future__ import annotations

import asyncio
import io
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO, cast

import aiohttp
import pytest
from botocore.exceptions import BotoCoreError

from storage.blobs import BlobNotFound, BlobStore
from storage.blobs.local import LocalBlobStore
from storage.blobs.s3 import MIN_PART_SIZE, S3BlobStore, S3Config
from tests.conftest import S3_TEST_KEYS, create_s3_bucket

# The first test that needs S3 also waits for moto to start (slow on a busy machine).
pytestmark = pytest.mark.timeout(180)


def s3_config(endpoint: str, bucket: str, **overrides: Any) -> S3Config:
    return S3Config(bucket=bucket, endpoint_url=endpoint, region="us-east-1", **S3_TEST_KEYS, **overrides)


@pytest.fixture
async def store(
    blob_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[BlobStore]:
    backend: BlobStore
    if blob_backend == "local":
        backend = LocalBlobStore(tmp_path / "blobs", base_url="http://files.test/files")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        backend = S3BlobStore(s3_config(endpoint, await create_s3_bucket(endpoint)))
    async with backend:
        yield backend


def payload(size: int) -> bytes:
    return os.urandom(size)


async def read_all(store: BlobStore, key: str, **kwargs: Any) -> bytes:
    return b"".join([chunk async for chunk in store.open(key, **kwargs)])


async def test_put_stat_open_delete_round_trip(store: BlobStore) -> None:
    data = payload(300_000)
    await store.put("samples/abc123.wav", io.BytesIO(data), size=len(data), content_type="audio/wav")
    info = await store.stat("samples/abc123.wav")
    assert info.size == len(data)
    assert info.content_type == "audio/wav"
    assert info.etag
    assert await read_all(store, "samples/abc123.wav") == data
    await store.delete("samples/abc123.wav")
    with pytest.raises(BlobNotFound):
        await store.stat("samples/abc123.wav")


async def test_ranged_reads(store: BlobStore) -> None:
    data = payload(200_000)
    await store.put("samples/ranged.mp3", io.BytesIO(data), size=len(data), content_type="audio/mpeg")
    assert await read_all(store, "samples/ranged.mp3", start=10, end=19) == data[10:20]
    assert await read_all(store, "samples/ranged.mp3", start=150_000) == data[150_000:]
    assert await read_all(store, "samples/ranged.mp3", start=0, end=0) == data[:1]


async def test_unknown_key_is_not_found_and_delete_is_idempotent(store: BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        await store.stat("samples/missing.wav")
    with pytest.raises(BlobNotFound):
        await read_all(store, "samples/missing.wav")
    await store.delete("samples/missing.wav")


@pytest.mark.parametrize("key", ["../etc/passwd", "samples/../../x", "/abs.wav", "Samples/UPPER.wav", ""])
async def test_keys_outside_our_shape_are_refused(store: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        await store.put(key, io.BytesIO(b"x"), size=1, content_type="audio/wav")


async def test_a_failed_put_leaves_no_object(store: BlobStore) -> None:
    class Failing(io.RawIOBase):
        """A source that breaks after 100 KB, like a disk error mid-upload."""

        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return True

        def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
            self.sent = pos if whence == io.SEEK_SET else self.sent
            return self.sent

        def tell(self) -> int:
            return self.sent

        def readinto(self, buffer: Any) -> int:
            if self.sent >= 100_000:
                raise OSError("source broke")
            n = min(len(buffer), 100_000 - self.sent)
            buffer[:n] = b"\0" * n
            self.sent += n
            return n

    # Locally the source's error comes through; botocore reports it as a failed request.
    with pytest.raises((OSError, BotoCoreError)):
        # A raw binary stream stands in for the BinaryIO a real upload passes.
        source = cast(BinaryIO, Failing())
        await store.put("samples/broken.wav", source, size=500_000, content_type="audio/wav")
    with pytest.raises(BlobNotFound):
        await store.stat("samples/broken.wav")


async def test_url_serves_the_object(store: BlobStore) -> None:
    data = payload(10_000)
    await store.put("samples/served.wav", io.BytesIO(data), size=len(data), content_type="audio/wav")
    url = await store.url("samples/served.wav")
    if isinstance(store, LocalBlobStore):
        # The app serves local files (tested over HTTP in tests/api/test_samples.py).
        assert url == "http://files.test/files/samples/served.wav"
        assert store.path("samples/served.wav").read_bytes() == data
        return
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == data
        assert resp.headers["Content-Type"] == "audio/wav"


async def test_s3_presigned_urls_expire_and_public_base_url_wins(s3_endpoint: str, s3_bucket: str) -> None:
    async with S3BlobStore(s3_config(s3_endpoint, s3_bucket, presign_ttl=600)) as store:
        url = await store.url("samples/x.wav")
        assert "X-Amz-Expires=600" in url and "X-Amz-Signature=" in url
    public = s3_config(s3_endpoint, s3_bucket, public_base_url="https://cdn.example.com/")
    async with S3BlobStore(public) as store:
        assert await store.url("samples/x.wav") == "https://cdn.example.com/samples/x.wav"


async def test_s3_multipart_upload_spans_several_parts(s3_endpoint: str, s3_bucket: str) -> None:
    size = MIN_PART_SIZE * 2 + 12_345
    with tempfile.TemporaryFile() as fh:
        data = payload(size)
        fh.write(data)
        fh.seek(0)
        async with S3BlobStore(s3_config(s3_endpoint, s3_bucket, part_size=MIN_PART_SIZE)) as store:
            await store.put("samples/big.wav", fh, size=size, content_type="audio/wav")
            info = await store.stat("samples/big.wav")
            assert info.size == size
            assert info.etag.strip('"').endswith("-3")  # S3's ETag of a 3-part upload
            assert await read_all(store, "samples/big.wav") == data
            uploads = await store.client.list_multipart_uploads(Bucket=s3_bucket)
            assert uploads.get("Uploads", []) == []


async def test_s3_cancelled_put_aborts_the_multipart_upload(s3_endpoint: str, s3_bucket: str) -> None:
    class CancelsHalfway(io.BytesIO):
        """A source that cancels the uploading task once half of it was read (a client gone)."""

        task: asyncio.Task[None] | None = None

        def read(self, size: int | None = -1) -> bytes:
            if self.tell() > 1_000_000 and self.task is not None:
                self.task.cancel()
            return super().read(size)

    source = CancelsHalfway(payload(2_000_000))
    async with S3BlobStore(s3_config(s3_endpoint, s3_bucket)) as store:
        task = asyncio.create_task(
            store.put("samples/cancelled.wav", source, size=2_000_000, content_type="audio/wav")
        )
        source.task = task
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(BlobNotFound):
            await store.stat("samples/cancelled.wav")
        uploads = await store.client.list_multipart_uploads(Bucket=s3_bucket)
        assert uploads.get("Uploads", []) == []


def test_s3_part_size_below_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        S3BlobStore(S3Config(bucket="b", part_size=1024))


async def test_stores_refuse_use_before_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not started"):
        await LocalBlobStore(tmp_path, base_url="http://x").stat("samples/a.wav")
    with pytest.raises(RuntimeError, match="not started"):
        await S3BlobStore(S3Config(bucket="b")).stat("samples/a.wav")


async def test_a_started_store_is_ready(store: BlobStore) -> None:
    await store.check()  # /readyz reports a store that raises here as failing
