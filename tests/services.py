"""Real Postgres and Redis for the test suite.

Order of preference: ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL``; else the servers on
their default local ports; else throwaway servers started from the installed binaries.
If none of that works the run fails: these tests never skip for a missing service.
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import redis

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


class ServiceUnavailable(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_reachable(url: str) -> bool:
    async def check() -> None:
        conn = await asyncpg.connect(url, timeout=3)
        await conn.close()

    try:
        asyncio.run(check())
    except Exception:
        return False
    return True


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@contextmanager
def _throwaway_postgres() -> Iterator[str]:
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not (initdb and pg_ctl):
        raise ServiceUnavailable("no Postgres reachable and no initdb/pg_ctl installed")
    root = tempfile.mkdtemp(prefix="mp-pg-")
    port = _free_port()
    user = "postgres"
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(root, user="postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data = os.path.join(root, "data")
    subprocess.run([*run_as, initdb, "-D", data, "-U", user, "-A", "trust"], check=True, capture_output=True)
    subprocess.run(
        [
            *run_as,
            pg_ctl,
            "-D",
            data,
            "-w",
            "-o",
            f"-p {port} -k {root} -h 127.0.0.1",
            "start",
            "-l",
            os.path.join(root, "log"),
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://{user}@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """An admin URL of a Postgres server for this run."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        if not _pg_reachable(url):
            raise ServiceUnavailable(f"TEST_DATABASE_URL is set but Postgres is unreachable: {url}")
        yield url
    elif _pg_reachable(DEFAULT_PG):
        yield DEFAULT_PG
    else:
        with _throwaway_postgres() as url:
            yield url


@contextmanager
def fresh_postgres_database(admin_url: str) -> Iterator[str]:
    """Create a database of our own on that server, dropped at the end."""
    name = f"mp_test_{uuid.uuid4().hex[:12]}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    base, _, _ = admin_url.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def redis_server() -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    candidates = [url] if url else [DEFAULT_REDIS]
    for candidate in candidates:
        try:
            redis.Redis.from_url(candidate, socket_timeout=3).ping()
        except redis.RedisError:
            continue
        yield candidate
        return
    if url:
        raise ServiceUnavailable(f"TEST_REDIS_URL is set but Redis is unreachable: {url}")
    binary = shutil.which("redis-server")
    if not binary:
        raise ServiceUnavailable("no Redis reachable and no redis-server installed")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(100):
            try:
                redis.Redis.from_url(started, socket_timeout=1).ping()
                break
            except redis.RedisError:
                time.sleep(0.05)
        else:
            raise ServiceUnavailable("throwaway redis-server did not start")
        yield started
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def s3_server() -> Iterator[str]:
    """An S3-compatible server on loopback (moto's server mode, a real HTTP process).

    Yields its endpoint URL. Any access key is accepted; each test makes its own bucket.
    """
    import sys
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150  # moto imports every AWS service: slow on a busy machine
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ServiceUnavailable("moto_server (S3) did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)
