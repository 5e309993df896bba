"""One contract for every bus backend (memory, redis), plus the Redis outage behaviour."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bus import Bus, BusState, Envelope, MemoryBus, MemoryHub, open_bus
from bus.redis import RedisBus
from tests.helpers import eventually
from tests.redis_process import RedisProcess

BusFactory = Callable[..., Awaitable[Bus]]


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """``await make_bus()``: a started bus; every bus of one test is one cluster."""
    url = str(request.getfixturevalue("redis_url")) if request.param == "redis" else "memory://"
    hub = MemoryHub()
    buses: list[Bus] = []

    async def make(instance_id: str | None = None) -> Bus:
        bus = open_bus(url, instance_id=instance_id, hub=hub)
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.stop()


def channel() -> str:
    return f"test:{uuid.uuid4().hex}"  # the shared Redis: a channel of this test's own


class Inbox:
    def __init__(self) -> None:
        self.got: list[Envelope] = []

    def __call__(self, envelope: Envelope) -> None:
        self.got.append(envelope)

    @property
    def data(self) -> list[bytes]:
        return [e.data for e in self.got]


async def test_others_receive_in_order_and_nobody_hears_itself(make_bus: BusFactory) -> None:
    a, b, c = await make_bus(), await make_bus(), await make_bus()
    name = channel()
    inboxes = {bus.instance_id: Inbox() for bus in (a, b, c)}
    for bus in (a, b, c):
        await bus.subscribe(name, inboxes[bus.instance_id])
    for i in range(50):
        a.publish(name, b"m%d" % i)
    b.publish(name, b"from b")
    expected_from_a = [b"m%d" % i for i in range(50)]
    await eventually(lambda: len(inboxes[c.instance_id].got) == 51)
    await eventually(lambda: len(inboxes[b.instance_id].got) == 50)
    await eventually(lambda: len(inboxes[a.instance_id].got) == 1)
    assert inboxes[b.instance_id].data == expected_from_a
    assert [e.data for e in inboxes[c.instance_id].got if e.origin == a.instance_id] == expected_from_a
    assert inboxes[a.instance_id].data == [b"from b"]
    first = inboxes[b.instance_id].got[0]
    assert (first.channel, first.origin, first.seq, first.after_gap) == (name, a.instance_id, 1, False)
    assert [e.seq for e in inboxes[b.instance_id].got] == list(range(1, 51))


async def test_channels_are_separate_and_unsubscribing_stops_delivery(make_bus: BusFactory) -> None:
    a, b = await make_bus(), await make_bus()
    one, two = channel(), channel()
    got_one, got_two = Inbox(), Inbox()
    await b.subscribe(one, got_one)
    await b.subscribe(two, got_two)
    a.publish(one, b"1")
    a.publish(two, b"2")
    await eventually(lambda: got_one.data == [b"1"] and got_two.data == [b"2"])
    await b.unsubscribe(one)
    a.publish(one, b"after")
    a.publish(two, b"marker")
    await eventually(lambda: got_two.data == [b"2", b"marker"])
    assert got_one.data == [b"1"]
    assert one not in b.channels and two in b.channels


async def test_reaches_others_is_true_whenever_another_instance_listens(make_bus: BusFactory) -> None:
    a, b = await make_bus(), await make_bus()
    name = channel()
    await a.subscribe(name, Inbox())
    # Only the in-process backend knows that nobody else listens (itself does not count).
    knows = isinstance(a, MemoryBus)
    assert a.reaches_others(name) is not knows
    inbox = Inbox()
    await b.subscribe(name, inbox)
    assert a.reaches_others(name) and b.reaches_others(name)
    a.publish(name, b"heard")
    await eventually(lambda: inbox.data == [b"heard"])
    await b.unsubscribe(name)
    assert a.reaches_others(name) is not knows


async def test_dropping_then_subscribing_again_at_once_keeps_the_subscription(make_bus: BusFactory) -> None:
    a, b = await make_bus(), await make_bus()
    name = channel()
    first, second = Inbox(), Inbox()
    await b.subscribe(name, first)
    b.drop(name)  # a room closed ...
    pending = asyncio.ensure_future(b.settle(name))
    await b.subscribe(name, second)  # ... and opened again before the backend followed
    await pending
    a.publish(name, b"x")
    await eventually(lambda: second.data == [b"x"])
    assert first.data == []


async def test_a_message_out_of_sequence_is_flagged(make_bus: BusFactory) -> None:
    origin = uuid.uuid4().hex
    a, receiver = await make_bus(origin), await make_bus()
    name = channel()
    inbox = Inbox()
    await receiver.subscribe(name, inbox)
    a.publish(name, b"1")
    a.publish(name, b"2")
    await eventually(lambda: len(inbox.got) == 2)
    # A second publisher with the same origin numbers from 1 again: to the receiver, messages
    # 3.. of that origin were never seen.
    twin = await make_bus(origin)
    twin.publish(name, b"again")
    await eventually(lambda: len(inbox.got) == 3)
    assert [e.after_gap for e in inbox.got] == [False, False, True]
    assert receiver.gaps == 1


async def test_misuse_fails_loudly(make_bus: BusFactory) -> None:
    bus = await make_bus()
    name = channel()
    await bus.subscribe(name, Inbox())
    with pytest.raises(ValueError, match="already subscribed"):
        await bus.subscribe(name, Inbox())
    stopped = open_bus("memory://")
    with pytest.raises(RuntimeError, match="not started"):
        stopped.publish(name, b"x")
    with pytest.raises(ValueError, match="unsupported bus URL"):
        open_bus("kafka://somewhere")


async def test_redis_outage_is_reported_and_recovered() -> None:
    with RedisProcess() as server:
        restored: list[float] = []
        a, b = open_bus(server.url), open_bus(server.url)
        assert isinstance(a, RedisBus)  # a redis:// URL: it counts what it drops
        async with a, b:
            b.on_restored(lambda: _record(restored))
            name = channel()
            inbox = Inbox()
            await b.subscribe(name, inbox)
            assert a.state is b.state is BusState.UP
            a.publish(name, b"before")
            await eventually(lambda: inbox.data == [b"before"])

            server.stop()
            await eventually(lambda: b.state is BusState.DOWN, timeout=15)
            a.publish(name, b"lost")  # pub/sub is at most once: gone, and counted
            await eventually(lambda: a.dropped >= 1, timeout=15)

            server.start()
            await eventually(lambda: b.state is BusState.UP and len(restored) == 1, timeout=20)
            assert b.outages == 1
            await eventually(lambda: a.state is BusState.UP, timeout=20)

            async def delivered_again() -> bool:
                a.publish(name, b"after")
                await asyncio.sleep(0.1)
                return b"after" in inbox.data

            for _ in range(100):
                if await delivered_again():
                    break
            assert inbox.data[0] == b"before" and b"after" in inbox.data
            assert b"lost" not in inbox.data


async def _record(into: list[float]) -> None:
    into.append(asyncio.get_running_loop().time())
