"""Document ids in their one canonical spelling.

``uuid.UUID()`` accepts upper case and shifted dashes, which would open the same document
under a second name (rooms, fan-out, revocation and caches all address the canonical one).
"""

from __future__ import annotations

import re
import uuid
from typing import Final

CANONICAL_UUID: Final = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CANONICAL_UUID_RE: Final = re.compile(CANONICAL_UUID)


def parse_canonical_uuid(text: str) -> uuid.UUID | None:
    """A UUID in its one canonical spelling (lowercase 8-4-4-4-12), None for any other text:
    the same id for every path, room and cache key."""
    return uuid.UUID(text) if _CANONICAL_UUID_RE.fullmatch(text) else None
