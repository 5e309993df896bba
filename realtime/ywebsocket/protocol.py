"""The y-websocket protocol's messages, one per binary frame, written with pycrdt's lib0
codecs (``write_message``) and read with the project's bounded lib0 reader (``music.lib0``;
never hand-rolled).

A message is a varUint type, then:

- ``0`` sync: a varUint sync type (``0`` step 1: a state vector; ``1`` step 2 and ``2``
  update: a Yjs update), then the payload as a varUint8Array;
- ``1`` awareness: a y-protocols awareness update as a varUint8Array;
- ``2`` auth: server to client, ``0`` (permission denied) and a varString reason; client to
  server (ours, optional), a varString of JSON ``{"token"}`` or ``{"shareToken"}``;
- ``3`` query awareness: nothing (the server answers with every awareness state).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from pycrdt import YMessageType, YSyncMessageType, write_message

from music.lib0 import MalformedPayload, read_var_uint


class MessageType(enum.IntEnum):
    SYNC = YMessageType.SYNC
    AWARENESS = YMessageType.AWARENESS
    AUTH = 2
    QUERY_AWARENESS = 3


AUTH_PERMISSION_DENIED: Final = 0
_SYNC_TYPES: Final = frozenset(int(t) for t in YSyncMessageType)


class MalformedMessage(ValueError):
    """A frame that is not one y-websocket message."""


@dataclass(frozen=True)
class Message:
    """One message from a client: its type, the sync type for sync messages, the payload."""

    type: MessageType
    payload: bytes
    sync_type: YSyncMessageType | None = None


def parse(frame: bytes) -> Message:
    """The message in ``frame``. Raises :class:`MalformedMessage`.

    Read with the bounded varint reader (``music.lib0``), not pycrdt's ``Decoder``: that one
    builds an integer of any size from a run of 0xff bytes, in time quadratic in the run (a
    full frame of them held the loop for seconds, before authentication).
    """
    try:
        raw_type, pos = read_var_uint(frame, 0)
        sync_type = None
        if raw_type == MessageType.SYNC:
            raw_sync, pos = read_var_uint(frame, pos)
            if raw_sync not in _SYNC_TYPES:
                raise MalformedMessage(f"unknown sync message type {raw_sync}")
            sync_type = YSyncMessageType(raw_sync)
        elif raw_type not in (MessageType.AWARENESS, MessageType.AUTH, MessageType.QUERY_AWARENESS):
            raise MalformedMessage(f"unknown message type {raw_type}")
        length = 0  # query awareness: nothing follows
        if raw_type != MessageType.QUERY_AWARENESS:
            length, pos = read_var_uint(frame, pos)  # the payload, a varUint8Array
    except MalformedPayload as exc:  # truncated, or a varint past 2^53 - 1
        raise MalformedMessage(str(exc)) from None
    if pos + length != len(frame):
        raise MalformedMessage("a payload's length does not match the frame")
    return Message(MessageType(raw_type), bytes(frame[pos:]), sync_type)


def sync_message(sync_type: YSyncMessageType, payload: bytes) -> bytes:
    """A sync message: step 1 (a state vector), step 2 or update (a Yjs update)."""
    return bytes((YMessageType.SYNC, sync_type)) + write_message(payload)


def awareness_message(update: bytes) -> bytes:
    return bytes((YMessageType.AWARENESS,)) + write_message(update)


def permission_denied(reason: str) -> bytes:
    """y-protocols' auth message: permission denied, with a reason in words."""
    return bytes((MessageType.AUTH, AUTH_PERMISSION_DENIED)) + write_message(reason.encode())


def auth_message(credentials_json: str) -> bytes:
    """Our client-to-server auth message (the credentials when not in the URL)."""
    return bytes((MessageType.AUTH,)) + write_message(credentials_json.encode())
