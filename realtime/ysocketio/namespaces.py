"""The y-socket.io namespaces of documents: ``/yjs|loop:<uuid>`` and ``/yjs|song:<uuid>``,
the id in its canonical spelling only (``music.ids``)."""

from __future__ import annotations

import uuid
from typing import Final

from music.kinds import DocKind
from realtime.handshake import parse_document_name

PREFIX: Final = "/yjs|"
NAMESPACE_HELP: Final = (
    "unknown namespace; use /yjs|loop:<id> or /yjs|song:<id> with the id as a lowercase UUID "
    "(8-4-4-4-12 hex digits)"
)


def parse_namespace(namespace: str) -> tuple[DocKind, uuid.UUID] | None:
    """``(kind, id)`` of a canonical document namespace, None for anything else."""
    if not namespace.startswith(PREFIX):
        return None
    return parse_document_name(namespace[len(PREFIX) :])
