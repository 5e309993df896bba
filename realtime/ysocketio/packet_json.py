"""The JSON module python-socketio and python-engineio encode and decode packets with
(their public ``json=`` option).

Their default wraps ``json.loads`` to bound integers, which builds a new ``JSONDecoder`` (and
its scanner) for every packet: 9 % of the server's CPU under the stock client's load, since
Engine.IO tries to parse every text frame. One decoder, made once, keeps the same bound.
"""

from __future__ import annotations

import json
from json import dumps  # noqa: F401 - part of the module interface the libraries use
from typing import Any

MAX_INT_DIGITS = 100  # the bound python-engineio applies: no quadratic int() on huge numbers


def _bounded_int(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS:
        raise ValueError("Integer is too large")
    return int(digits)


_DECODER = json.JSONDecoder(parse_int=_bounded_int)


def loads(s: str | bytes | bytearray, **kwargs: Any) -> Any:
    if kwargs:
        return json.loads(s, parse_int=_bounded_int, **kwargs)
    return _DECODER.decode(s if isinstance(s, str) else bytes(s).decode())
