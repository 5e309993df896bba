"""Each backend opened from the settings: the one place that maps settings onto the values a
storage or bus factory takes (the factories themselves live with their backends and never see
``Settings``). Nothing connects here; the composition root enters what these return."""

from __future__ import annotations

from bus import Bus, open_bus
from events.webhook_urls import UrlRules
from settings import Settings
from storage.blobs import BlobStore, S3Config, open_blobs
from storage.counters import Counters, open_counters
from storage.database import Database


def database(settings: Settings) -> Database:
    """The SQL database of ``DATABASE_URL`` (SQLite in ``DATA_DIR`` without one)."""
    return Database(settings.effective_database_url, postgres_pool_size=settings.postgres_pool_size)


def bus(settings: Settings) -> Bus:
    """Redis pub/sub with ``REDIS_URL``, else in-process."""
    return open_bus(settings.redis_url)


def counters(settings: Settings) -> Counters:
    """Rate-limit counters: in Redis with ``REDIS_URL`` (keys under ``REDIS_PREFIX``), else in-process."""
    return open_counters(settings.redis_url, key_prefix=settings.redis_prefix.rstrip(":"))


def sample_blobs(settings: Settings) -> BlobStore:
    """Where sample files live: the ``S3_*`` bucket when one is set, else ``DATA_DIR/samples``
    served by this app at ``/files``."""
    s3 = None
    if settings.s3_bucket:
        s3 = S3Config(
            bucket=settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=settings.s3_secret_access_key,
            public_base_url=settings.s3_public_base_url,
            presign_ttl=settings.s3_presign_seconds,
        )
    return open_blobs(
        s3=s3, local_root=settings.data_dir / "samples", local_base_url=f"{settings.public_base_url}/files"
    )


def webhook_url_rules(settings: Settings) -> UrlRules:
    """Only https:// in production (Postgres), no private addresses, unless
    ``WEBHOOK_ALLOW_PRIVATE_ADDRESSES`` says otherwise."""
    allow = settings.webhook_allow_private_addresses
    return UrlRules(require_https=settings.is_postgres and not allow, allow_private=allow)
