"""Fixtures shared by every tier: real databases (SQLite and Postgres), the real app."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypedDict

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from musicplayground.app import create_app
from settings import Settings
from storage.database import Database
from storage.schema import upgrade
from tests.firebase_fakes import FakeFirebase
from tests.services import fresh_postgres_database, postgres_server, redis_server, s3_server

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
FIREBASE_PROJECT = "mp-test"


async def _migrate(url: str) -> None:
    async with Database(url) as db:
        await upgrade(db)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh Postgres database for this run, migrated to head (asyncpg URL)."""
    with postgres_server() as admin_url, fresh_postgres_database(admin_url) as url:
        async_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
        asyncio.run(_migrate(async_url))
        yield async_url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3-compatible server (moto) on loopback for this run."""
    with s3_server() as endpoint:
        yield endpoint


class S3Keys(TypedDict):
    access_key_id: str
    secret_access_key: str


S3_TEST_KEYS: S3Keys = {"access_key_id": "test-access-key", "secret_access_key": "test-secret-key"}


async def create_s3_bucket(endpoint: str) -> str:
    """A new, empty bucket on the test S3 server (unique per test)."""
    import aioboto3

    name = f"mp-test-{uuid.uuid4().hex[:16]}"
    async with aioboto3.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=S3_TEST_KEYS["access_key_id"],
        aws_secret_access_key=S3_TEST_KEYS["secret_access_key"],
    ) as s3:
        await s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def blob_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def s3_bucket(s3_endpoint: str) -> str:
    return await create_s3_bucket(s3_endpoint)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test copies it instead of migrating again."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


async def _truncate_postgres(url: str) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            names = ", ".join(f'"{t["tablename"]}"' for t in tables)
            await conn.execute(f"TRUNCATE {names} CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs Postgres (``-m "not postgres"``: the quick tier's selection)."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("backend") == "postgres"
        if on_postgres or "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database on the parametrized backend."""
    if backend == "sqlite":
        path = tmp_path / "musicplayground.sqlite3"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = str(request.getfixturevalue("postgres_url"))
    asyncio.run(_truncate_postgres(url))
    return url


@pytest.fixture
async def fake_firebase() -> AsyncIterator[FakeFirebase]:
    async with FakeFirebase(project_id=FIREBASE_PROJECT) as fb:
        yield fb


@pytest.fixture
def settings(database_url: str, tmp_path: Path, fake_firebase: FakeFirebase) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=TEST_SECRET,
        public_base_url="http://testserver",
        cors_origins=("http://composer.test",),
        firebase_project_id=fake_firebase.project_id,
        firebase_cert_url=fake_firebase.cert_url,
        max_loops_per_user=5,
        max_songs_per_user=3,
    )


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings) -> TestClient:
    """The real app on a real socket (aiohttp's TestServer), on one backend."""
    return await aiohttp_client(create_app(settings))
