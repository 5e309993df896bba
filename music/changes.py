"""What changed between two contents of a loop or song, in music terms.

The version history (activity, versions, compare, undo one person's changes) speaks of
cells, not bytes: a content is seen as a set of cells, each with its own identity, the same
identities the document layout merges on (``music/schema.py``):

- a field of ``meta`` (name, length, bpm, colour, tempo, time signature...): ``field:<name>``;
- a chord cell, by its bar: ``chord:<bar>``;
- a sequencer step, by its cell (step, row, sound, tone): ``step:<step_key>``;
- a timeline block, by its id: ``block:<id>``.

``cells`` flattens a content into them, ``content_of_cells`` builds a content back, and
``diff`` says which were added, removed or changed, with a short ``summary`` of counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from pycrdt import Doc, Map

from music.kinds import DocKind
from music.reading import touched_keys
from music.schema import CHORDS, META, STEPS, TIMELINE, root_map, step_key, step_sort_key

# The collections of each kind: content key -> cell prefix, and the identity of an element.
_COLLECTIONS: Final = {
    DocKind.LOOP: (("chordProgression", "chord"), ("iconSequence", "step")),
    DocKind.SONG: (("timeline", "block"),),
}
# Content keys that are computed from the rest, never a cell of their own.
_DERIVED: Final = frozenset({"totalBars"})

Cells = dict[str, Any]


def _identity(prefix: str, element: Mapping[str, Any]) -> str:
    if prefix == "chord":
        return str(element["bar"])
    if prefix == "step":
        return step_key(element)
    return str(element["id"])


def cells(kind: DocKind | str, content: Mapping[str, Any]) -> Cells:
    """A content (the seed's JSON shape, as ``music.reading`` returns it) as its cells."""
    kind = DocKind(kind)
    collections = dict(_COLLECTIONS[kind])
    out: Cells = {}
    for key, value in content.items():
        if key in _DERIVED:
            continue
        prefix = collections.get(key)
        if prefix is None:
            out[f"field:{key}"] = value
            continue
        for element in value or ():
            out[f"{prefix}:{_identity(prefix, element)}"] = element
    return out


def content_of_cells(kind: DocKind | str, flat: Mapping[str, Any]) -> dict[str, Any]:
    """The content made of ``flat`` cells (the inverse of :func:`cells`), collections in the
    order readers give them."""
    kind = DocKind(kind)
    content: dict[str, Any] = {}
    lists: dict[str, list[Any]] = {key: [] for key, _ in _COLLECTIONS[kind]}
    by_prefix = {prefix: key for key, prefix in _COLLECTIONS[kind]}
    for cell, value in flat.items():
        prefix, _, name = cell.partition(":")
        if prefix == "field":
            content[name] = value
        else:
            lists[by_prefix[prefix]].append(value)
    for key, elements in lists.items():
        if key == "chordProgression":
            elements.sort(key=lambda chord: chord["bar"])
        elif key == "iconSequence":
            elements.sort(key=step_sort_key)
        else:
            elements.sort(key=lambda block: (block["startBar"], block["id"]))
        content[key] = elements
    return content


@dataclass
class Change:
    """One cell that differs: ``before`` None means added, ``after`` None removed."""

    cell: str
    before: Any
    after: Any

    @property
    def kind(self) -> str:
        return self.cell.partition(":")[0]

    def as_json(self) -> dict[str, Any]:
        prefix, _, name = self.cell.partition(":")
        what = "added" if self.before is None else "removed" if self.after is None else "changed"
        return {
            "cell": self.cell,
            "type": prefix,
            "key": name,
            "change": what,
            "from": self.before,
            "to": self.after,
        }


@dataclass
class Diff:
    changes: list[Change] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return summarize(self.changes)

    def as_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "changes": [c.as_json() for c in self.changes]}


def diff_cells(before: Mapping[str, Any], after: Mapping[str, Any]) -> Diff:
    """The cells that differ from ``before`` to ``after``, in a stable order."""
    changes = [
        Change(cell, before.get(cell), after.get(cell))
        for cell in sorted(before.keys() | after.keys())
        if before.get(cell) != after.get(cell)
    ]
    return Diff(changes)


def diff(kind: DocKind | str, before: Mapping[str, Any], after: Mapping[str, Any]) -> Diff:
    """What changed from content ``before`` to content ``after``."""
    return diff_cells(cells(kind, before), cells(kind, after))


def summarize(changes: list[Change]) -> dict[str, int]:
    """Counts in music terms: ``stepsAdded``, ``chordsChanged``, ``blocksMoved``, ``fieldsChanged``...
    (a block whose start or length changed counts as moved; zero counts are left out)."""
    counts: dict[str, int] = {}

    def bump(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    noun = {"step": "steps", "chord": "chords", "block": "blocks", "field": "fields"}
    for change in changes:
        plural = noun[change.kind]
        if change.before is None:
            bump(f"{plural}Added")
        elif change.after is None:
            bump(f"{plural}Removed")
        elif change.kind == "block" and _moved(change.before, change.after):
            bump("blocksMoved")
        else:
            bump(f"{plural}Changed")
    return counts


def _moved(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    return any(before.get(key) != after.get(key) for key in ("startBar", "duration"))


def changed_fields(changes: list[Change]) -> list[str]:
    """The names of the meta fields among ``changes`` (name, bpm, color, length...)."""
    return [change.cell.partition(":")[2] for change in changes if change.kind == "field"]


# The document's roots (music/schema.py) and the cells their keys are.
_ROOT_CELLS: Final = {
    DocKind.LOOP: ((META, "field"), (CHORDS, "chord"), (STEPS, "step")),
    DocKind.SONG: ((META, "field"), (TIMELINE, "block")),
}


class CellWatcher:
    """The cells that updates applied to ``doc`` touch, without reading the whole content:
    ``take()`` returns those touched since the last call (a cell's key in the document is
    its identity, as in :func:`cells`). ``close()`` stops watching."""

    def __init__(self, kind: DocKind | str, doc: Doc) -> None:
        self._touched: set[str] = set()
        self._subscriptions: list[tuple[Map, Any]] = []
        for name, prefix in _ROOT_CELLS[DocKind(kind)]:
            root = root_map(doc, name)
            self._subscriptions.append((root, root.observe_deep(self._collect(prefix))))

    def _collect(self, prefix: str) -> Any:
        def collect(events: Any) -> None:
            self._touched.update(f"{prefix}:{key}" for key in touched_keys(events))

        return collect

    def take(self) -> set[str]:
        touched, self._touched = self._touched, set()
        return touched

    def close(self) -> None:
        for root, subscription in self._subscriptions:
            root.unobserve(subscription)
        self._subscriptions.clear()
