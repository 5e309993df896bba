"""The kinds of collaborative document and their tables: the one ``"loop"|"song"`` -> model map."""

from __future__ import annotations

from storage.models import Loop, Song

RESOURCE_MODELS: dict[str, type[Loop] | type[Song]] = {"loop": Loop, "song": Song}
RESOURCE_TYPES: dict[type[Loop] | type[Song], str] = {model: name for name, model in RESOURCE_MODELS.items()}
# Heavy JSON columns that list views leave out unless asked for.
CONTENT_COLUMNS: dict[type[Loop] | type[Song], tuple[str, ...]] = {
    Loop: ("chord_progression", "icon_sequence"),
    Song: ("timeline",),
}


def document_model(resource_type: str) -> type[Loop] | type[Song]:
    """The table of a resource type (``"loop"`` or ``"song"``); ValueError otherwise."""
    try:
        return RESOURCE_MODELS[resource_type]
    except KeyError:
        raise ValueError(f"unknown resource type {resource_type!r}") from None


def resource_type_of(document: Loop | Song | type[Loop] | type[Song]) -> str:
    """``"loop"`` or ``"song"`` for a row or a model."""
    return RESOURCE_TYPES[document if isinstance(document, type) else type(document)]
