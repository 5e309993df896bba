"""Awareness (y-protocols) for one room: keep every state, relay only real changes.

Clients of the y-socket.io provider re-send every peer's entry they receive and, after a
disconnect, send ``null`` for *other* users. So the server accepts from a socket only the
entries of the client ids that socket introduced, and drops the rest. The encodings come
from pycrdt (``Awareness``, ``Decoder``, ``Encoder``); entries are relayed as the exact
bytes the client sent.

What is relayed must be readable by every stock client, or one bad state breaks every later
joiner: states are strict JSON (no ``NaN``/``Infinity``, which Python's parser accepts and
``JSON.parse`` refuses), bounded in size and depth; client ids are uint32 as in Yjs, clocks
fit a JavaScript number. A client id belongs to the socket that first used it until that
socket leaves, and stays reserved for the same user (or share link) afterwards, so a
reconnecting client keeps its id and nobody else can take it over.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any, Final

from pycrdt import Awareness, Doc, Encoder

from music.lib0 import MalformedPayload, read_var_uint

MAX_CLIENT_ID: Final = 2**32 - 1  # Yjs client ids are uint32
MAX_STATE_DEPTH: Final = 16
MAX_RESERVED_IDS: Final = 4096  # per room; the oldest reservations are forgotten first


class MalformedAwareness(ValueError):
    """The bytes are not a y-protocols awareness update, or a state is not acceptable."""


def _refuse_constant(name: str) -> Any:
    raise MalformedAwareness(f"awareness state is not strict JSON ({name})")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # "1e999": JSON.parse gives Infinity, re-encoding gives junk
        raise MalformedAwareness("awareness state has a number out of range")
    return value


def parse_state(text: str) -> dict[str, Any]:
    """An awareness state as JSON that JavaScript's ``JSON.parse`` reads the same way."""
    try:
        state = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise MalformedAwareness(f"awareness state nested deeper than {MAX_STATE_DEPTH}") from None
    if not isinstance(state, dict):
        raise MalformedAwareness("an awareness state must be a JSON object or null")
    _check_depth(state)
    return state


def _check_depth(state: Any) -> None:
    level = [state]
    for _ in range(MAX_STATE_DEPTH):
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, dict | list)
        ]
        if not level:
            return
    raise MalformedAwareness(f"awareness state nested deeper than {MAX_STATE_DEPTH}")


class RoomAwareness:
    """Awareness states of one room and which session owns each client id."""

    def __init__(self, doc: Doc, *, max_state_bytes: int = 8192, max_ids_per_session: int = 8) -> None:
        self._awareness = Awareness(doc)
        self._awareness.set_local_state(None)  # the server itself is not a participant
        self._owners: dict[int, str] = {}  # client id -> the session using it
        self._reserved: OrderedDict[int, str] = OrderedDict()  # client id -> its user's identity
        self._max_state_bytes = max_state_bytes
        self._max_ids = max_ids_per_session
        self._changed = False
        self._awareness.observe(self._on_update)

    def _on_update(self, topic: str, _event: tuple[dict[str, Any], Any]) -> None:
        if topic == "update":
            self._changed = True

    def client_ids_of(self, session_id: str) -> list[int]:
        return [cid for cid, owner in self._owners.items() if owner == session_id]

    @property
    def states(self) -> dict[int, dict[str, Any]]:
        return self._awareness.states

    def apply(self, session_id: str, update: bytes, identity: str | None = None) -> bytes | None:
        """Apply what ``session_id`` may set; return the bytes to relay, or None if nothing changed.

        ``identity`` names who is behind the session across reconnects (a user id); ids it
        used stay reserved for it. Raises ``MalformedAwareness`` for a refused update.
        """
        entries = self._decode(update)
        identity = identity or f"session:{session_id}"
        accepted: list[bytes] = []
        owned = len(self.client_ids_of(session_id))
        for client_id, state_text, raw in entries:
            owner = self._owners.get(client_id)
            if owner != session_id:
                if state_text in ("", "null") or owned >= self._max_ids:
                    continue  # a removal of someone else's state, or too many ids
                if owner is not None:
                    continue  # an echo of another socket's state
                reserved_by = self._reserved.get(client_id)
                if reserved_by is not None and reserved_by != identity:
                    continue  # the id of someone who left: kept for their return
                self._owners[client_id] = session_id
                self._reserved[client_id] = identity
                self._reserved.move_to_end(client_id)
                while len(self._reserved) > MAX_RESERVED_IDS:
                    self._reserved.popitem(last=False)
                owned += 1
            accepted.append(raw)
        if not accepted:
            return None
        encoder = Encoder()
        encoder.write_var_uint(len(accepted))
        relay = encoder.to_bytes() + b"".join(accepted)
        self._changed = False
        self._awareness.apply_awareness_update(relay, origin=session_id)
        return relay if self._changed else None

    def remove_session(self, session_id: str) -> bytes | None:
        """Forget a departed session's states; return the removal to broadcast, if any."""
        ids = self.client_ids_of(session_id)
        for client_id in ids:
            del self._owners[client_id]  # the reservation for its identity stays
        present = [cid for cid in ids if cid in self._awareness.states]
        if not present:
            return None
        self._awareness.remove_awareness_states(present, origin=session_id)
        removal = self._awareness.encode_awareness_update(present)
        for client_id in ids:
            # Forget the clock too: the client may come back with the same id and a fresh
            # awareness clock (a new page load), which the old clock would make look stale.
            self._awareness.meta.pop(client_id, None)
        return removal

    def encode_all(self) -> bytes | None:
        """Every current state, for a late joiner."""
        ids = list(self._awareness.states)
        return self._awareness.encode_awareness_update(ids) if ids else None

    def _decode(self, update: bytes) -> list[tuple[int, str, bytes]]:
        """``(client id, state JSON, the entry's exact bytes)`` for each entry.

        Read with the bounded varint reader (pycrdt's ``Decoder`` builds integers of any size
        from a run of 0xff bytes); pycrdt's ``Awareness`` then applies what passed.
        """
        try:
            count, pos = read_var_uint(update, 0)
            if count > 64:
                raise MalformedAwareness("awareness update lists too many clients")
            entries = []
            for _ in range(count):
                start = pos
                client_id, pos = read_var_uint(update, pos)
                if client_id > MAX_CLIENT_ID:
                    raise MalformedAwareness("awareness client id out of the uint32 range")
                _clock, pos = read_var_uint(update, pos)
                length, pos = read_var_uint(update, pos)
                if pos + length > len(update):
                    raise MalformedAwareness("malformed awareness update: truncated state")
                raw = update[start : pos + length]
                if len(raw) > self._max_state_bytes:
                    raise MalformedAwareness(f"awareness state larger than {self._max_state_bytes} bytes")
                state_text = update[pos : pos + length].decode("utf-8")
                pos += length
                if state_text not in ("", "null"):
                    parse_state(state_text)
                entries.append((client_id, state_text, raw))
        except MalformedAwareness:
            raise
        except (MalformedPayload, UnicodeDecodeError) as exc:
            raise MalformedAwareness(f"malformed awareness update: {exc}") from exc
        if pos != len(update):
            raise MalformedAwareness("malformed awareness update: trailing bytes")
        return entries

    def encode_session(self, session_id: str) -> bytes | None:
        """The current states of one session's client ids (to share them with other instances)."""
        present = [cid for cid in self.client_ids_of(session_id) if cid in self._awareness.states]
        return self._awareness.encode_awareness_update(present) if present else None
