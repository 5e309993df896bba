"""The cluster message codec (envelope and presence payloads) and the settings of several instances."""

from __future__ import annotations

import uuid

import pytest

from bus import MemoryBus, open_bus
from bus.redis import RedisBus
from music.roles import Role
from presence import cluster as presence
from presence.members import Member
from realtime.cluster import ClusterMessage
from settings import ConfigError, Settings


def test_messages_round_trip_with_binary_bodies() -> None:
    for message in (
        ClusterMessage("update", {"id": 42}, b"\x00\x01\xff"),
        ClusterMessage("hello"),
        ClusterMessage("event", {"event": "comment", "data": {"text": "ünïcode", "n": [1, 2]}}),
        ClusterMessage("awareness", *presence.awareness_payload("sid-1", [b"\x01abc", b"", b"\x02"])),
    ):
        assert ClusterMessage.decode(message.encode()) == message
    encoded = ClusterMessage(
        "awareness", *presence.awareness_payload("s", [b"\x01abc", b"", b"\x02"])
    ).encode()
    decoded = ClusterMessage.decode(encoded)
    assert presence.read_awareness(decoded.header, decoded.body) == [b"\x01abc", b"", b"\x02"]


def test_members_and_event_payloads_with_ids_travel_as_text() -> None:
    user = uuid.uuid4()
    members = {"s1": Member(user, "Ada", Role.OWNER), "s2": Member(None, "Guest", Role.VIEWER)}
    encoded = ClusterMessage("members", presence.members_header(members)).encode()
    assert presence.read_members(ClusterMessage.decode(encoded).header) == members
    event = ClusterMessage("event", {"event": "comment", "data": {"id": user}})
    assert ClusterMessage.decode(event.encode()).header["data"] == {"id": str(user)}


def test_settings_of_several_instances() -> None:
    default = Settings.from_env({})
    assert (default.redis_url, default.redis_prefix, default.presence_timeout) == (None, "mp:", 30.0)
    tuned = Settings.from_env(
        {"REDIS_URL": "redis://cache:6379/0", "REDIS_PREFIX": "prod:", "PRESENCE_TIMEOUT_SECONDS": "10"}
    )
    assert (tuned.redis_url, tuned.redis_prefix, tuned.presence_timeout) == (
        "redis://cache:6379/0",
        "prod:",
        10.0,
    )
    with pytest.raises(ConfigError, match="REDIS_URL"):
        Settings.from_env({"REDIS_URL": "http://cache:6379"})
    with pytest.raises(ConfigError, match="REDIS_PREFIX"):
        Settings.from_env({"REDIS_PREFIX": "has space"})
    with pytest.raises(ConfigError, match="PRESENCE_TIMEOUT_SECONDS"):
        Settings.from_env({"PRESENCE_TIMEOUT_SECONDS": "0"})


def test_the_url_picks_the_backend() -> None:
    assert isinstance(open_bus(None), MemoryBus)
    assert isinstance(open_bus("memory://"), MemoryBus)
    assert isinstance(open_bus("redis://127.0.0.1:6379/0"), RedisBus)
