"""Paths and query strings that carry text the databases cannot store are refused at the edge.

Postgres refuses NUL in text (asyncpg raises, a 500 if it reached a query) and SQLite's
``LIKE`` treats it as the end of the pattern (a search for ``%00`` matched everything). No
URL of ours needs such a character, so one middleware answers 400 ``invalid_characters``
before any handler, for every route, with the one pattern the body validation uses
(``music.bounds.UNSTORABLE_TEXT``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from music.bounds import UNSTORABLE_TEXT
from rest.errors import error_response

INVALID_CHARACTERS = "invalid_characters"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def has_unstorable_text(request: web.BaseRequest) -> bool:
    """Whether the decoded path or query string holds NUL or a lone surrogate.

    ``query_string`` is decoded as well (yarl keeps invalid UTF-8 percent-encoded, so it can
    never hold a surrogate that the query's values would not).
    """
    return bool(UNSTORABLE_TEXT.search(request.path) or UNSTORABLE_TEXT.search(request.query_string))


@web.middleware
async def url_text_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if has_unstorable_text(request):
        return error_response(
            400,
            INVALID_CHARACTERS,
            "the URL contains a character that is not accepted (NUL or a lone surrogate)",
        )
    return await handler(request)
