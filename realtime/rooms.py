"""A room: one live collaborative document in memory and the sockets editing it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pycrdt import Doc, Map, TransactionEvent, get_update, merge_updates

from music.kinds import DocKind
from music.lib0 import MalformedPayload, read_var_uint
from music.positions import PositionOutOfRange, check_doc_positions
from music.reading import LIVE_COLLECTIONS, ContentReader, check_live_bounds, touched_keys
from music.roles import Role
from music.schema import META
from music.writing import apply_content
from presence.awareness import RoomAwareness
from presence.members import Member, RoomMembers
from realtime.errors import ErrorCode, RealtimeError
from storage.access import AccessRules

MAX_CACHED_DIFFS = 16
# ...holding at most this many bytes (state vectors and diffs): a client asking with one state
# vector after another must not make a room keep a copy of a big document for each.
MAX_CACHED_DIFF_BYTES = 1024 * 1024
EMPTY_UPDATE = b"\x00\x00"
# The rollback copy of a document (see Room._begin_trial) is re-encoded once what was
# appended to it since reaches the size of its base, and at least this much: amortized, each
# byte of edits is encoded a bounded number of times, and the copy stays under twice the size
# of the encoded document.
MIN_ROLLBACK_TAIL_BYTES = 64 * 1024

RoomKey = tuple[DocKind, uuid.UUID]  # how the document service finds a room


class TokenBucket:
    """Messages per second for one connection, with a burst of twice the rate."""

    __slots__ = ("capacity", "rate", "tokens", "updated")  # one per socket

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = rate * 2
        self.tokens = self.capacity
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


@dataclass(eq=False, slots=True)  # one per socket
class Session:
    """One socket connected to one document."""

    sid: str
    user_id: uuid.UUID | None
    display_name: str
    role: Role
    share_token: str | None
    bucket: TokenBucket
    transport_id: Any = None  # the transport's handle for fast sends
    wire: RoomTransport | None = None  # the wire carrying this socket (None: the first attached)
    last_error_at: float = 0.0
    refused_updates: int = 0  # updates refused after a trial on the document

    @property
    def identity(self) -> str:
        """Who is behind the socket, across reconnects: the user, else the share link."""
        if self.user_id is not None:
            return f"user:{self.user_id}"
        return f"share:{self.share_token}"

    @property
    def member(self) -> Member:
        return Member(self.user_id, self.display_name, self.role)


@dataclass(frozen=True)
class Audience:
    """Which sockets of a room a named event is for: everyone but the sockets of ``users``
    (``only=False``, the default: with no users, everyone), or only theirs (``only=True``).
    What moderation hides is sent only to those allowed to see it (rest/comments.py)."""

    users: frozenset[uuid.UUID] = frozenset()
    only: bool = False

    def admits(self, session: Session) -> bool:
        listed = session.user_id is not None and session.user_id in self.users
        return listed if self.only else not listed

    def as_json(self) -> dict[str, Any]:
        return {"users": sorted(str(u) for u in self.users), "only": self.only}

    @classmethod
    def from_json(cls, data: Any) -> Audience:
        """The audience a bus message names (``None``: everyone); ValueError if malformed."""
        if data is None:
            return EVERYONE
        if not isinstance(data, dict) or not isinstance(data.get("users"), list):
            raise ValueError("an audience is {users: [...], only: bool}")
        return cls(frozenset(uuid.UUID(str(u)) for u in data["users"]), bool(data.get("only")))


EVERYONE = Audience()


class RoomTransport(Protocol):
    """How a room reaches its sockets (implemented by the Socket.IO edge)."""

    def send(self, namespace: str, sessions: Iterable[Session], event: str, data: Any) -> None:
        """Queue ``event`` for every session; the payload is encoded once."""

    async def disconnect(self, namespace: str, session: Session, code: str, message: str) -> None:
        """Tell the session why with an ``error`` event, then close it (no reconnect)."""


@dataclass(eq=False)
class Room:
    """The live document of one loop or song.

    Updates from clients are applied to ``doc`` at once (that validates them; a refused one
    is rolled back, see ``apply_untrusted``), written to the durable log, and only then
    relayed: ``queue_broadcast`` batches what became durable in the same loop iteration into
    one message for the room (a lone sender is left out; with several, each also gets its own
    edits back, which Yjs ignores). ``doc`` is replaced when a refused change is rolled back:
    read it from the room each time.
    """

    kind: DocKind
    doc_id: uuid.UUID
    doc: Doc
    transport: RoomTransport
    position: int = 0  # newest update-log id known to be in ``doc``, and every id before it
    # Ids after ``position`` of log entries known to be in ``doc`` (the room's own commits,
    # updates from the bus): a snapshot reads back only the others.
    logged_ids: set[int] = field(default_factory=set)
    stored_bytes: int = 0  # size of the last snapshot plus what was appended since
    sessions: dict[str, Session] = field(default_factory=dict)
    version: int = 0
    persisted_version: int = 0
    dirty_since: float | None = None
    # What the last snapshot stored (``stored_bytes`` then): the log's tail is the rest.
    folded_bytes: int = 0
    # Since the last snapshot, something listings show (name, tempo, colour, length: the
    # meta map) changed, so the row's columns are worth refreshing at the regular interval.
    listing_changed: bool = False
    empty_since: float | None = None
    last_edit_at: float | None = None  # wall-clock time of the last edit made while loaded
    snapshot_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    access: AccessRules | None = None  # who may join (None: ask the database)

    def __post_init__(self) -> None:
        self.namespace = f"/yjs|{self.kind.value}:{self.doc_id}"
        self.awareness = RoomAwareness(self.doc)
        self.members = RoomMembers()
        self._delta: bytes | None = None
        self._outbox: list[tuple[str | None, bytes]] = []
        self._flush_scheduled = False
        self._presence_scheduled = False
        self._full_update: bytes | None = None
        self._state_vector: bytes | None = None
        self._content: dict[str, Any] | None = None
        self.full_encodes = 0  # how often the whole document was encoded (join storms: once)
        self._diffs: dict[bytes, bytes] = {}  # state vector -> what it lacks, this version
        self._diff_bytes = 0
        # What rolls back a refused trial (see _begin_trial): the accepted document as
        # updates, a full encoding and every change accepted after it. Made at the first trial.
        self._rollback: list[bytes] | None = None
        self._rollback_tail_bytes = 0
        self._touched: dict[str, set[str]] = {}  # root -> keys changed since the trial began
        self._touched_subscriptions: list[Any] = []
        self._reader: ContentReader | None = None  # made on the first read
        self._subscription = self.doc.observe(self._on_transaction)
        self._meta_subscription = self._observe_meta()

    # --- the document ---------------------------------------------------------------

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._delta = event.update
        self.version += 1
        self._forget_encodings()

    def loaded(self) -> None:
        """The stored document is in: building it is nobody's delta (else a whole copy of the
        document stays in memory until the first edit)."""
        self._delta = None

    def _observe_meta(self) -> Any:
        return self.doc.get(META, type=Map).observe(self._on_meta)

    def _on_meta(self, _event: object) -> None:
        self.listing_changed = True

    def unfolded_bytes(self) -> int:
        """How much of the document is in the update log's tail, not yet in the row."""
        return self.stored_bytes - self.folded_bytes

    def _forget_encodings(self) -> None:
        """Drop what was derived from the document as it was (it changed)."""
        self._full_update = self._state_vector = self._content = None
        self._diffs.clear()
        self._diff_bytes = 0

    def _begin_trial(self) -> int:
        """Start trying an untrusted change on ``doc`` itself; returns the version
        ``_roll_back`` restores.

        Trying it on a copy first and then applying it again to the live document cost every
        edit two applies and every edited room a second document in memory. Instead the room
        keeps, as bytes, what rebuilds the accepted document: a full encoding and every
        change accepted since (``_accept``; so every change goes through this class's
        ``apply*`` methods), re-encoded when that tail outgrows the base. A refused change,
        rare, rebuilds the document from it.
        """
        if self._rollback is None:
            self._rollback = [self.doc.get_update()]
            self._rollback_tail_bytes = 0
            self._observe_touched()
        for touched in self._touched.values():
            touched.clear()
        self._delta = None
        return self.version

    def _observe_touched(self) -> None:
        """Collect which entries each transaction touches, so a trial checks only those
        (``check_live_bounds``)."""
        roots = [META, *(name for name, _ in LIVE_COLLECTIONS[self.kind])]
        self._touched = {name: set() for name in roots}
        self._touched_subscriptions = [  # kept: a dropped subscription stops observing
            self.doc.get(name, type=Map).observe_deep(_collector(touched))
            for name, touched in self._touched.items()
        ]

    def _roll_back(self, version: int) -> None:
        """Make ``doc`` what it was when the trial began (at ``version``): a new document,
        built from the rollback updates (only accepted changes are in them), with the same
        client id (the server's own changes go on from its clock) and the same observers."""
        assert self._rollback is not None
        base, *tail = self._rollback
        old = self.doc
        old.unobserve(self._subscription)
        doc: Doc[Any] = Doc(client_id=old.client_id)
        doc.apply_update(base)
        if tail:
            with doc.transaction():  # one transaction: half the cost of one per update
                for update in tail:
                    doc.apply_update(update)
        self.doc = doc
        self._subscription = doc.observe(self._on_transaction)
        self._meta_subscription = self._observe_meta()
        self._observe_touched()
        if self._reader is not None:
            self._reader.rebind(doc)  # its cache still holds for every entry it is not re-reading
        self.version = version
        self._delta = None
        self._forget_encodings()

    def _accept(self, recorded: bytes | None) -> bytes | None:
        """A change stands: add ``recorded`` (what rebuilds it) to the rollback updates;
        return what the change did to the document (None if nothing)."""
        rollback = self._rollback
        if rollback is not None and recorded is not None:
            rollback.append(recorded)
            self._rollback_tail_bytes += len(recorded)
            if self._rollback_tail_bytes >= max(MIN_ROLLBACK_TAIL_BYTES, len(rollback[0])):
                self._rollback = [self.doc.get_update()]
                self._rollback_tail_bytes = 0
        return self._take_delta()

    def apply_untrusted(self, update: bytes) -> bytes | None:
        """Apply a client's update only if the document stays within bounds.

        The update is applied, then checked; a refused one is rolled back (``_roll_back``),
        so the document is as if it never came. It is refused if pycrdt would keep part of it
        pending -- yrs holds structs whose dependencies never arrived, uncounted and
        unbounded -- or if the content would exceed what REST accepts
        (:func:`check_live_bounds`).

        Raises:
            RealtimeError: ``malformed_update``, ``missing_dependencies`` or ``content_too_large``.
        """
        if update == EMPTY_UPDATE:  # a client with nothing new (every sync-step-1 reply of a fresh one)
            return None
        version = self._begin_trial()
        try:
            with self.doc.transaction():  # one transaction: the update, then the state it left
                self.doc.apply_update(update)
                state = self.doc.get_state()
        except Exception as exc:  # pycrdt raises ValueError, sometimes others, on junk
            self._roll_back(version)
            raise RealtimeError(ErrorCode.MALFORMED_UPDATE, "not a valid Yjs update") from exc
        try:
            try:
                pending = _leaves_pending(update, state)
            except MalformedPayload:
                raise RealtimeError(ErrorCode.MALFORMED_UPDATE, "client id or clock out of range") from None
            if pending:
                raise RealtimeError(
                    ErrorCode.MISSING_DEPENDENCIES,
                    "this update depends on changes the server does not have; it was not applied",
                )
            try:
                check_live_bounds(self.kind, self.doc, self._touched)
            except ValueError as exc:
                raise RealtimeError(ErrorCode.CONTENT_TOO_LARGE, str(exc)) from None
            self._check_positions()
        except RealtimeError:
            self._roll_back(version)
            raise
        return self._accept(self._delta)

    def apply(self, update: bytes) -> bytes | None:
        """Apply a trusted Yjs update (stored, or from another instance); return what it
        changed (None if nothing). Raises ValueError."""
        self._delta = None
        self.doc.apply_update(update)  # one transaction of its own: _on_transaction sees it
        # The update itself, not the delta: structs yrs keeps pending (their dependencies are
        # still on the way) are in neither the delta nor the state, only in the update.
        return self._accept(update)

    def apply_content(
        self, content: dict[str, Any], fields: set[str] | None, *, max_growth: int | None = None
    ) -> bytes | None:
        """Make the document match ``content`` for ``fields`` (a REST write).

        A refused write (``ValueError`` for bad content, ``RealtimeError``
        ``document_too_large`` when the change is larger than ``max_growth`` bytes) is
        rolled back, as a refused client update is.
        """
        version = self._begin_trial()
        try:
            apply_content(self.kind, self.doc, content, fields=fields)  # validates first
            self._check_positions()
            delta = self._delta
            if delta is not None and max_growth is not None and len(delta) > max_growth:
                raise RealtimeError(
                    ErrorCode.DOCUMENT_TOO_LARGE, "this change would make the document too large"
                )
        except BaseException:
            self._roll_back(version)
            raise
        return self._accept(self._delta)

    def _check_positions(self) -> None:
        """A loop's changed steps and chords stay inside its length (``music.positions``)."""
        if self.kind is DocKind.LOOP:
            try:
                check_doc_positions(self.doc, self._touched)
            except PositionOutOfRange as exc:
                raise RealtimeError(ErrorCode.POSITION_OUT_OF_RANGE, str(exc)) from None

    def _take_delta(self) -> bytes | None:
        delta, self._delta = self._delta, None
        if delta is not None:
            self.last_edit_at = time.time()
            if self.dirty_since is None:
                self.dirty_since = time.monotonic()
        return delta

    def state_vector(self) -> bytes:
        if self._state_vector is None:
            self._state_vector = self.doc.get_state()
        return self._state_vector

    def missing_update(self, state_vector: bytes) -> bytes:
        """What a client with ``state_vector`` lacks. Joiners with an empty document share one
        cached full state, so a join storm encodes the document once."""
        if state_vector == b"\x00":
            if self._full_update is None:
                self.full_encodes += 1
                self._full_update = self.doc.get_update()
            return self._full_update
        # A client may ask again and again (100 messages/s): encode once per version.
        diff = self._diffs.get(state_vector)
        if diff is None:
            diff = self.doc.get_update(state_vector)
            cost = len(state_vector) + len(diff)
            if len(self._diffs) >= MAX_CACHED_DIFFS or self._diff_bytes + cost > MAX_CACHED_DIFF_BYTES:
                self._diffs.clear()
                self._diff_bytes = 0
            if cost <= MAX_CACHED_DIFF_BYTES:
                self._diffs[state_vector] = diff
                self._diff_bytes += cost
        return diff

    def content(self) -> dict[str, Any]:
        """The document as REST JSON (cached until the next change)."""
        if self._content is None:
            if self._reader is None:
                self._reader = ContentReader(self.kind, self.doc)
            self._content = self._reader.content()
        return self._content

    def close(self) -> None:
        self.doc.unobserve(self._subscription)
        if self._reader is not None:
            self._reader.close()
        self._rollback = None

    # --- fan-out ----------------------------------------------------------------------

    def queue_broadcast(self, update: bytes, sender: str | None) -> None:
        """Relay a durable update to every session but its sender, batched per loop turn."""
        self._outbox.append((sender, update))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, []
        if not outbox or not self.sessions:
            return
        senders = {sender for sender, _ in outbox}
        if len(senders) > 1:
            # Several senders in one turn: everyone gets the one merged update, their own
            # edits included (Yjs applies what it already has as a no-op). One merge and one
            # encoding, instead of one per sender leaving out their own.
            everything = merge_updates(*(u for _, u in outbox))
            self.transport.send(self.namespace, self.sessions.values(), "sync-update", everything)
            return
        (sender,) = senders
        everything = outbox[0][1] if len(outbox) == 1 else merge_updates(*(u for _, u in outbox))
        bystanders = [s for sid, s in self.sessions.items() if sid != sender]
        if bystanders:  # never echoed to its only sender
            self.transport.send(self.namespace, bystanders, "sync-update", everything)

    def send_to_others(
        self, sender: str | None, event: str, data: Any, audience: Audience = EVERYONE
    ) -> None:
        if audience is EVERYONE:
            recipients = [s for sid, s in self.sessions.items() if sid != sender]
        else:
            recipients = [s for sid, s in self.sessions.items() if sid != sender and audience.admits(s)]
        if recipients:
            self.transport.send(self.namespace, recipients, event, data)

    def send_presence(self) -> None:
        """Tell everyone the room's members, once per loop turn: the sockets of a join storm
        wake up together when their room has loaded, and each would otherwise send the whole
        list to all the others (n joins, n² messages)."""
        if not self._presence_scheduled:
            self._presence_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_presence)

    def _flush_presence(self) -> None:
        self._presence_scheduled = False
        if self.sessions and not self.closed:
            self.transport.send(
                self.namespace, self.sessions.values(), "presence", {"members": self.members.as_json()}
            )


def _leaves_pending(update: bytes, state: bytes) -> bool:
    """Whether a document failed to integrate some of ``update``'s structs (yrs keeps them as
    "pending" until their dependencies arrive): what of the update the document's ``state``
    (after applying it) does not cover still holds struct sections (its first varint counts
    them)."""
    sections, _ = read_var_uint(get_update(update, state), 0)
    return sections > 0


def _collector(touched: set[str]) -> Callable[[list[Any]], None]:
    def collect(events: list[Any]) -> None:  # one parameter: pycrdt passes only the events
        touched.update(touched_keys(events))

    return collect
