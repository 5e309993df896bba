"""A chunk of packed history entries gives back exactly the entries packed into it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from storage.history import Entry, pack_entries, unpack_entries


def test_a_chunk_gives_back_its_entries() -> None:
    people = [uuid.uuid4(), uuid.uuid4()]
    start = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    found = [
        Entry(
            1000 + 3 * i,  # ids with gaps (other documents' entries between)
            None if i % 5 == 0 else people[i % 2],  # None: no recorded author (a share link)
            start + timedelta(microseconds=1234 * i),
            bytes([i % 256]) * (i % 70),  # lengths 0..69
        )
        for i in range(500)
    ]
    packed = pack_entries(found)
    assert unpack_entries(packed) == found
    assert len(packed) < sum(len(entry.data) for entry in found) / 3


def test_a_time_without_a_zone_is_read_as_utc() -> None:
    naive = Entry(7, None, datetime(2026, 12, 7, 12, 0), b"x")  # as SQLite gives times back
    (unpacked,) = unpack_entries(pack_entries([naive]))
    assert unpacked.created_at == datetime(2026, 12, 7, 12, 0, tzinfo=UTC) and unpacked.data == b"x"
