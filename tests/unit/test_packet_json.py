"""The packet JSON module keeps python-engineio's integer bound and the stdlib's answers."""

from __future__ import annotations

import json

import pytest

from realtime.ysocketio import packet_json


@pytest.mark.parametrize(
    "text", ['["sync-update",{"_placeholder":true,"num":0}]', '{"a": [1, 2.5, null]}', "7"]
)
def test_decodes_like_the_standard_library(text: str) -> None:
    assert packet_json.loads(text) == json.loads(text)
    assert packet_json.loads(text.encode()) == json.loads(text)


def test_refuses_huge_integers() -> None:
    with pytest.raises(ValueError, match="too large"):
        packet_json.loads("1" * (packet_json.MAX_INT_DIGITS + 1))


def test_a_socket_io_packet_that_is_not_json_still_fails_as_engineio_expects() -> None:
    with pytest.raises(ValueError):
        packet_json.loads('51-/yjs|loop:x,["sync-update"]')
