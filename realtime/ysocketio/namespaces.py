"""The y-socket.io namespaces of documents: ``/yjs|loop:<uuid>`` and ``/yjs|song:<uuid>``,
the id in its canonical spelling only (``music.ids``)."""

from __future__ import annotations

import re
import uuid
from typing import Final

from music.ids import CANONICAL_UUID
from music.kinds import DocKind

NAMESPACE: Final = re.compile(rf"/yjs\|({'|'.join(DocKind)}):({CANONICAL_UUID})")
NAMESPACE_HELP: Final = (
    "unknown namespace; use /yjs|loop:<id> or /yjs|song:<id> with the id as a lowercase UUID "
    "(8-4-4-4-12 hex digits)"
)


def parse_namespace(namespace: str) -> tuple[DocKind, uuid.UUID] | None:
    """``(kind, id)`` of a canonical document namespace, None for anything else."""
    match = NAMESPACE.fullmatch(namespace)
    if match is None:
        return None
    return DocKind(match.group(1)), uuid.UUID(match.group(2))
