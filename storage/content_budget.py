"""Document content for a page of a listing, within a byte budget.

A list page with ``include=content`` carries each document's chords, steps or timeline. A
loop at its bounds holds ~150 KB of them, so a page of 100 such loops was ~9 MB to read,
decode, encode and send, for one request that needs no token (explore). Here a page's
content is read in page order until ``budget`` bytes of it are reached: the first document
always, then each one that still fits; the documents after that come without content (the
listing marks them, and their content is one ``GET`` away).

The size counted is that of the content's JSON text as the database holds it (SQLite: the
stored text; Postgres: JSONB rendered as text), measured on what is read, so the bound holds
whatever the documents hold. What is read is chosen beforehand from the number of entries
in each content column, which both databases tell without decoding the JSON (Postgres from
the JSONB header), so a page reads little more than it sends.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from typing import Any

import pydantic_core
from sqlalchemy import ColumnElement, Integer, Text, bindparam, cast, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from storage.database import AnySelect, Database
from storage.kinds import CONTENT_COLUMNS
from storage.models import Loop, Song

# A guess at one entry's JSON (a step is ~70 bytes as stored), to choose how many documents
# to read at once; the budget itself is checked on the bytes read.
ENTRY_BYTES = 96
DOCUMENT_BYTES = 64  # ...and what a document's content costs besides its entries


class json_entries(FunctionElement[int]):
    """How many entries a JSON array column holds, without decoding the JSON."""

    type = Integer()
    inherit_cache = True


@compiles(json_entries)
def _json_entries(element: json_entries, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_array_length({compiler.process(element.clauses, **kw)})"


@compiles(json_entries, "postgresql")
def _json_entries_postgres(element: json_entries, compiler: SQLCompiler, **kw: Any) -> str:
    return f"jsonb_array_length({compiler.process(element.clauses, **kw)})"


def content_entries(model: type[Loop] | type[Song]) -> ColumnElement[int]:
    """The number of entries of a document's content (chord cells and steps, or timeline
    blocks): select it with a page, to pass to :func:`read_contents`."""
    table = model.__table__
    counts = [json_entries(table.c[name]) for name in CONTENT_COLUMNS[model]]  # never NULL
    total: ColumnElement[int] = counts[0]
    for count in counts[1:]:
        total = total + count
    return total.label("content_entries")


@functools.cache
def _content_query(model: type[Loop] | type[Song]) -> AnySelect:
    table = model.__table__
    texts = [cast(table.c[name], Text).label(name) for name in CONTENT_COLUMNS[model]]
    return select(table.c.id, *texts).where(table.c.id == bindparam("id"))


async def read_contents(
    db: Database,
    model: type[Loop] | type[Song],
    ids: Sequence[uuid.UUID],
    entries: Sequence[int],
    *,
    budget: int,
) -> dict[uuid.UUID, dict[str, Any]]:
    """The content columns (decoded) of the documents ``ids``, a page in its order, with the
    number of ``entries`` of each: the first document's, then each next one's while the
    JSON read stays within ``budget`` bytes. A document missing from the result was left out
    (past the budget, or deleted meanwhile)."""
    query = _content_query(model)
    names = CONTENT_COLUMNS[model]
    contents: dict[uuid.UUID, dict[str, Any]] = {}
    used = 0
    position = 0
    while position < len(ids) and used < budget:
        batch: list[uuid.UUID] = []
        predicted = used
        for doc_id, count in zip(ids[position:], entries[position:], strict=True):
            guess = count * ENTRY_BYTES + DOCUMENT_BYTES
            if batch and predicted + guess > budget:
                break
            batch.append(doc_id)
            predicted += guess
        rows = await db.read_each(query, [{"id": doc_id} for doc_id in batch])
        texts = {row[0]: row[1:] for row in rows}
        for doc_id in batch:
            columns = texts.get(doc_id)
            if columns is None:
                continue  # deleted since the page was read
            size = sum(len(text) for text in columns if text is not None)
            if contents and used + size > budget:
                return contents
            contents[doc_id] = {
                name: pydantic_core.from_json(text) if text is not None else None
                for name, text in zip(names, columns, strict=True)
            }
            used += size
        position += len(batch)
    return contents
