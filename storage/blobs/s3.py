"""Blobs in an S3-compatible bucket (AWS S3, Cloudflare R2, MinIO) through aioboto3.

Uploads are multipart: each part is a bounded window of the source file handed to the
HTTP client as a file object, which streams it, so no part is ever held in memory.
Without a public base URL (a public bucket behind a CDN), readers get presigned GET URLs
with a bounded lifetime.
"""

from __future__ import annotations

import io
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any, BinaryIO

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.blobs.base import CHUNK_SIZE, BlobInfo, BlobNotFound, BlobStore, S3Config, check_key

log = logging.getLogger(__name__)

# S3's smallest allowed part (except the last one).
MIN_PART_SIZE = 5 * 1024 * 1024
# Objects never change once written (keys are never reused).
IMMUTABLE = "public, max-age=31536000, immutable"

__all__ = ["MIN_PART_SIZE", "S3BlobStore", "S3Config"]


class _Window(io.RawIOBase):
    """``length`` bytes of ``source`` from ``offset``, as a seekable file (botocore may rewind)."""

    def __init__(self, source: BinaryIO, offset: int, length: int) -> None:
        self._source, self._offset, self._length, self._pos = source, offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + pos))
        return self._pos

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        self._source.seek(self._offset + self._pos)
        data = self._source.read(want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def __len__(self) -> int:
        return self._length


def _is_missing(exc: ClientError) -> bool:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"404", "NoSuchKey", "NotFound"}


class S3BlobStore(BlobStore):
    name = "s3"

    def __init__(self, config: S3Config) -> None:
        if config.part_size < MIN_PART_SIZE:
            raise ValueError(f"part size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self.config = config
        self._stack: AsyncExitStack | None = None
        self._client: Any = None

    async def start(self) -> None:
        session = aioboto3.Session()
        self._stack = AsyncExitStack()
        self._client = await self._stack.enter_async_context(
            session.client(
                "s3",
                endpoint_url=self.config.endpoint_url,
                region_name=self.config.region,
                aws_access_key_id=self.config.access_key_id,
                aws_secret_access_key=self.config.secret_access_key,
                config=Config(
                    signature_version="s3v4",
                    retries={"max_attempts": 3, "mode": "standard"},
                    # No extra pass over every part to checksum or sign it (UNSIGNED-PAYLOAD,
                    # as botocore does over HTTPS): TLS protects the bytes in transit, and
                    # the row keeps our own SHA-256 of the file. Halves the CPU of a put.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                    s3={"payload_signing_enabled": False},
                ),
            )
        )

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = None
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("S3BlobStore is not started")
        return self._client

    async def put(self, key: str, source: BinaryIO, *, size: int, content_type: str) -> None:
        check_key(key)
        bucket = self.config.bucket
        upload = await self.client.create_multipart_upload(
            Bucket=bucket, Key=key, ContentType=content_type, CacheControl=IMMUTABLE
        )
        upload_id = upload["UploadId"]
        try:
            parts = []
            offset = 0
            number = 1
            while offset < size or number == 1:
                length = min(self.config.part_size, size - offset)
                # The part is read from the file as it is sent: never a whole part in memory.
                body = io.BufferedReader(_Window(source, offset, length), buffer_size=CHUNK_SIZE)
                part = await self.client.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentLength=length,
                )
                parts.append({"PartNumber": number, "ETag": part["ETag"]})
                offset += length
                number += 1
            await self.client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            try:
                await self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception:
                log.exception("could not abort multipart upload of %s", key)
            raise

    async def check(self) -> None:
        await self.client.head_bucket(Bucket=self.config.bucket)

    async def stat(self, key: str) -> BlobInfo:
        try:
            head = await self.client.head_object(Bucket=self.config.bucket, Key=check_key(key))
        except ClientError as exc:
            if _is_missing(exc):
                raise BlobNotFound(key) from None
            raise
        return BlobInfo(size=int(head["ContentLength"]), content_type=head["ContentType"], etag=head["ETag"])

    async def open(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        extra = {}
        if start or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            got = await self.client.get_object(Bucket=self.config.bucket, Key=check_key(key), **extra)
        except ClientError as exc:
            if _is_missing(exc):
                raise BlobNotFound(key) from None
            raise
        body = got["Body"]
        try:
            async for chunk in body.iter_chunks(CHUNK_SIZE):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await self.client.delete_object(Bucket=self.config.bucket, Key=check_key(key))

    async def url(self, key: str) -> str:
        check_key(key)
        if self.config.public_base_url:
            return f"{self.config.public_base_url.rstrip('/')}/{key}"
        return str(
            await self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.config.bucket, "Key": key},
                ExpiresIn=self.config.presign_ttl,
            )
        )
