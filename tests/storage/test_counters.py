"""The rate-limit counter contract, run against every backend (memory, redis)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.counters import Counters, CountersUnavailable, Quota, open_counters
from tests.helpers import eventually
from tests.server_process import free_port


@pytest.fixture(params=["memory", "redis"])
async def counters(request: pytest.FixtureRequest) -> AsyncIterator[Counters]:
    url = None if request.param == "memory" else request.getfixturevalue("redis_url")
    async with open_counters(url, key_prefix=f"test-{uuid.uuid4()}") as opened:
        yield opened


async def test_allows_up_to_the_limit_then_refuses(counters: Counters) -> None:
    quota = Quota("get", limit=3, period=3600)
    decisions = [await counters.hit(quota, "user-1") for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining for d in decisions] == [2, 1, 0, 0]
    assert all(d.limit == 3 for d in decisions)
    refused = decisions[-1]
    assert 0 < refused.reset_after <= 3600


async def test_keys_and_quotas_are_counted_separately(counters: Counters) -> None:
    one = Quota("mutations", limit=1, period=60)
    other = Quota("uploads", limit=1, period=60)
    assert (await counters.hit(one, "a")).allowed
    assert not (await counters.hit(one, "a")).allowed
    assert (await counters.hit(one, "b")).allowed
    assert (await counters.hit(other, "a")).allowed


async def test_concurrent_hits_never_exceed_the_limit(counters: Counters) -> None:
    quota = Quota("burst", limit=10, period=60)
    decisions = await asyncio.gather(*(counters.hit(quota, "k") for _ in range(30)))
    assert sum(d.allowed for d in decisions) == 10


async def test_window_slides_open_again(counters: Counters) -> None:
    quota = Quota("short", limit=2, period=1)
    assert (await counters.hit(quota, "k")).allowed
    assert (await counters.hit(quota, "k")).allowed
    assert not (await counters.hit(quota, "k")).allowed
    # Two full windows later the previous window no longer weighs in.
    await asyncio.sleep(2.1)
    decision = await counters.hit(quota, "k")
    assert decision.allowed and decision.remaining == 1


async def test_storage_answers_check(counters: Counters) -> None:
    assert await counters.check()
    assert counters.available


async def test_two_clients_on_one_redis_share_counts(redis_url: str) -> None:
    prefix = f"test-{uuid.uuid4()}"
    quota = Quota("get", limit=2, period=3600)
    async with (
        open_counters(redis_url, key_prefix=prefix) as a,
        open_counters(redis_url, key_prefix=prefix) as b,
    ):
        assert (await a.hit(quota, "u")).allowed
        assert (await b.hit(quota, "u")).allowed
        assert not (await a.hit(quota, "u")).allowed


async def test_unreachable_redis_raises_unavailable_and_reports_it() -> None:
    async with open_counters(f"redis://127.0.0.1:{free_port()}/0") as dead:
        with pytest.raises(CountersUnavailable):
            await dead.hit(Quota("get", limit=5, period=60), "u")
        assert not dead.available
        assert dead.last_error
        assert not await dead.check()
        # Within the back-off the dead storage is not even tried again.
        with pytest.raises(CountersUnavailable):
            await dead.hit(Quota("get", limit=5, period=60), "u")


def test_unknown_url_is_refused() -> None:
    with pytest.raises(ValueError, match="must be memory://, redis://, rediss:// or unix://"):
        open_counters("memcached://localhost")


async def test_a_redis_unix_socket_url_counts_in_redis(tmp_path: Path) -> None:
    """REDIS_URL may name a socket (unix://, as the bus takes it): the counters follow it."""
    socket_path = tmp_path / "redis.sock"
    server = await asyncio.create_subprocess_exec(
        *(
            "redis-server",
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--save",
            "",
            "--appendonly",
            "no",
        ),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        url = f"unix://{socket_path}"
        await eventually(lambda: socket_path.exists(), timeout=10)
        quota = Quota("get", limit=1, period=3600)
        async with open_counters(url, key_prefix="a") as a, open_counters(url, key_prefix="a") as b:
            assert a.backend == "redis"
            assert (await a.hit(quota, "u")).allowed
            assert not (await b.hit(quota, "u")).allowed  # the same count, in that Redis
            assert await a.check()
    finally:
        server.kill()
        await server.wait()
