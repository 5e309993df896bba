"""Each kind of document (``music.kinds``) and its table: the one kind <-> model map of storage.

The registry names each kind's table; the model is the SQLAlchemy class of that table, so
this map is derived, not written a second time.
"""

from __future__ import annotations

from typing import Final

from music.kinds import KINDS, DocKind
from storage.models import Base, Loop, Song

DocumentModel = type[Loop] | type[Song]

_BY_TABLE: Final = {mapper.class_.__tablename__: mapper.class_ for mapper in Base.registry.mappers}
MODELS: Final[dict[DocKind, DocumentModel]] = {kind: _BY_TABLE[info.table] for kind, info in KINDS.items()}
RESOURCE_MODELS: Final[dict[str, DocumentModel]] = {kind.value: model for kind, model in MODELS.items()}
RESOURCE_TYPES: Final[dict[DocumentModel, str]] = {model: kind.value for kind, model in MODELS.items()}
# Heavy JSON columns that list views leave out unless asked for.
CONTENT_COLUMNS: Final[dict[DocumentModel, tuple[str, ...]]] = {
    model: KINDS[kind].heavy_columns for kind, model in MODELS.items()
}


def document_model(resource_type: str) -> DocumentModel:
    """The table of a resource type (``"loop"`` or ``"song"``); ValueError otherwise."""
    try:
        return RESOURCE_MODELS[resource_type]
    except KeyError:
        raise ValueError(f"unknown resource type {resource_type!r}") from None


def resource_type_of(document: Loop | Song | DocumentModel) -> str:
    """``"loop"`` or ``"song"`` for a row or a model."""
    return RESOURCE_TYPES[document if isinstance(document, type) else type(document)]
