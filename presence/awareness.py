"""Awareness (y-protocols) for one room: keep every state, relay only real changes.

Clients of the y-socket.io provider re-send every peer's entry they receive and, after a
disconnect, send ``null`` for *other* users. So the server accepts from a socket only the
entries of the client ids that socket introduced, and drops the rest. The encodings come
from pycrdt (``Awareness``, ``Decoder``, ``Encoder``); entries are relayed as the exact
bytes the client sent.
"""

from __future__ import annotations

import json
from typing import Any

from pycrdt import Awareness, Decoder, Doc, Encoder


class MalformedAwareness(ValueError):
    """The bytes are not a y-protocols awareness update, or a state is not acceptable."""


class RoomAwareness:
    """Awareness states of one room and which session owns each client id."""

    def __init__(self, doc: Doc, *, max_state_bytes: int = 8192, max_ids_per_session: int = 8) -> None:
        self._awareness = Awareness(doc)
        self._awareness.set_local_state(None)  # the server itself is not a participant
        self._owners: dict[int, str] = {}
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

    def apply(self, session_id: str, update: bytes) -> bytes | None:
        """Apply what ``session_id`` may set; return the bytes to relay, or None if nothing changed."""
        entries = self._decode(update)
        accepted: list[bytes] = []
        owned = len(self.client_ids_of(session_id))
        for client_id, state_text, raw in entries:
            owner = self._owners.get(client_id)
            if owner is None:
                if state_text in ("", "null") or owned >= self._max_ids:
                    continue
                self._owners[client_id] = session_id
                owned += 1
            elif owner != session_id:
                continue  # an echo of, or a removal of, someone else's state
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
            del self._owners[client_id]
        present = [cid for cid in ids if cid in self._awareness.states]
        if not present:
            return None
        self._awareness.remove_awareness_states(present, origin=session_id)
        return self._awareness.encode_awareness_update(present)

    def encode_all(self) -> bytes | None:
        """Every current state, for a late joiner."""
        ids = list(self._awareness.states)
        return self._awareness.encode_awareness_update(ids) if ids else None

    def _decode(self, update: bytes) -> list[tuple[int, str, bytes]]:
        """``(client id, state JSON, the entry's exact bytes)`` for each entry."""
        try:
            decoder = Decoder(update)
            count = decoder.read_var_uint()
            if count > 64:
                raise MalformedAwareness("awareness update lists too many clients")
            entries = []
            for _ in range(count):
                start = decoder.i0
                client_id = decoder.read_var_uint()
                decoder.read_var_uint()  # clock
                state_text = decoder.read_var_string()
                raw = update[start : decoder.i0]
                if len(raw) > self._max_state_bytes:
                    raise MalformedAwareness(f"awareness state larger than {self._max_state_bytes} bytes")
                if state_text not in ("", "null"):
                    state = json.loads(state_text)
                    if not isinstance(state, dict):
                        raise MalformedAwareness("an awareness state must be a JSON object or null")
                entries.append((client_id, state_text, raw))
        except MalformedAwareness:
            raise
        except (RuntimeError, IndexError, ValueError, UnicodeDecodeError) as exc:
            raise MalformedAwareness("malformed awareness update") from exc
        if decoder.length != 0:
            raise MalformedAwareness("malformed awareness update: trailing bytes")
        return entries

    def encode_session(self, session_id: str) -> bytes | None:
        """The current states of one session's client ids (to share them with other instances)."""
        present = [cid for cid in self.client_ids_of(session_id) if cid in self._awareness.states]
        return self._awareness.encode_awareness_update(present) if present else None
