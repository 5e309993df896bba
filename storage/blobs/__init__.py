"""Where sample files live: one small interface, two backends chosen by configuration.

- :class:`~storage.blobs.local.LocalBlobStore`: files under the data directory, served by
  the app itself (the embedded default);
- :class:`~storage.blobs.s3.S3BlobStore`: any S3-compatible object store (AWS S3,
  Cloudflare R2, MinIO) through aioboto3.

Keys are chosen by the caller (random, never user input). Every backend streams: ``put``
reads its source in bounded chunks and ``open`` yields bounded chunks, so memory does not
grow with the file.
"""

from __future__ import annotations

from storage.blobs.base import BlobInfo, BlobNotFound, BlobStore

__all__ = ["BlobInfo", "BlobNotFound", "BlobStore"]
