"""Where sample files live: one small interface, two backends chosen by configuration.

- :class:`~storage.blobs.local.LocalBlobStore`: files under the data directory, served by
  the app itself (the embedded default);
- :class:`~storage.blobs.s3.S3BlobStore`: any S3-compatible object store (AWS S3,
  Cloudflare R2, MinIO) through aioboto3.

:func:`open_blobs` picks one, importing it lazily, as :func:`bus.open_bus` does for the bus.
Keys are chosen by the caller (random, never user input). Every backend streams: ``put``
reads its source in bounded chunks and ``open`` yields bounded chunks, so memory does not
grow with the file.
"""

from __future__ import annotations

from pathlib import Path

from storage.blobs.base import BlobInfo, BlobNotFound, BlobStore, S3Config


def open_blobs(*, s3: S3Config | None, local_root: Path, local_base_url: str) -> BlobStore:
    """The S3 store of ``s3`` when a bucket is configured, else files under ``local_root``,
    served by the app at ``local_base_url``. Nothing connects until the store is entered."""
    if s3 is not None:
        from storage.blobs.s3 import S3BlobStore  # aioboto3 only when a bucket is configured

        return S3BlobStore(s3)
    from storage.blobs.local import LocalBlobStore

    return LocalBlobStore(local_root, base_url=local_base_url)


__all__ = ["BlobInfo", "BlobNotFound", "BlobStore", "S3Config", "open_blobs"]
