"""Reading one setting's value: the parsers of the settings table.

A parser turns the raw text of an environment variable into its value, or raises
:class:`ConfigError` with the rest of the sentence after the variable's name
(``must be an integer, got 'x'``); the table adds the name.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

Parser = Callable[[str], Any]


class ConfigError(ValueError):
    """A configuration value is missing or malformed (one line per problem)."""


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and `musicplayground config`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def text(raw: str) -> str:
    return raw


def stripped(raw: str) -> str:
    return raw.strip()


def path(raw: str) -> Path:
    return Path(raw)


def integer(minimum: int = 0, *, maximum: int | None = None, maximum_means: str = "") -> Parser:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            means = f" ({maximum_means})" if maximum_means else ""
            raise ConfigError(f"must be <= {maximum}{means}, got {value}")
        return value

    return parse


def seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"must be > 0, got {value}")
    return value


def seconds_list(raw: str) -> tuple[float, ...]:
    """Comma-separated positive numbers of seconds (a retry schedule)."""
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not parts:
        raise ConfigError("must list at least one number of seconds")
    return tuple(seconds(part) for part in parts)


def choice(choices: tuple[str, ...]) -> Parser:
    def parse(raw: str) -> str:
        for choice in choices:
            if choice.lower() == raw.strip().lower():
                return choice
        raise ConfigError(f"must be one of {', '.join(choices)}, got {raw.strip()!r}")

    return parse


def switch(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"must be on or off, got {value!r}")


def url(*schemes: str, base: bool = False) -> Parser:
    """A URL of one of ``schemes``; ``base``: a base URL, kept without its trailing slash."""

    def parse(raw: str) -> str:
        value = raw.strip()
        parts = urlsplit(value)
        if parts.scheme not in schemes or not (parts.netloc or parts.path):
            shown = mask_url(value)
            raise ConfigError(f"must be a {' or '.join(s + '://' for s in schemes)} URL, got {shown!r}")
        return value.rstrip("/") if base else value

    return parse


def origins(raw: str) -> tuple[str, ...]:
    """Comma-separated http(s) origins; an empty value is none."""
    check = url("http", "https")
    found = tuple(o.strip() for o in raw.split(",") if o.strip())
    for origin in found:
        check(origin)
    return found


def database_url(raw: str) -> str:
    """Accept the URLs hosting providers hand out and pick the async driver."""
    value = raw.strip()
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            return "postgresql+asyncpg://" + value[len(prefix) :]
    if value.startswith("sqlite://") and not value.startswith("sqlite+aiosqlite://"):
        return "sqlite+aiosqlite://" + value[len("sqlite://") :]
    if value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
        return value
    raise ConfigError(f"must be a postgresql:// or sqlite:// URL, got {value.split(':', 1)[0]}://")


def key_prefix(raw: str) -> str:
    if len(raw) > 64 or any(c.isspace() for c in raw):
        raise ConfigError("must be 1-64 characters without spaces")
    return raw


def networks(raw: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR networks, normalized (``10.0.0.0/8``)."""
    found = []
    for part in (p.strip() for p in raw.split(",")):
        if part:
            try:
                found.append(str(ipaddress.ip_network(part, strict=False)))
            except ValueError:
                raise ConfigError(f"must be IP addresses or networks, got {part!r}") from None
    return tuple(found)


def clamd_url(raw: str) -> str:
    value = raw.strip()
    if not value.startswith(("tcp://", "unix://")):
        raise ConfigError(f"must be tcp://host:port or unix:///path, got {value!r}")
    return value


def uuids(raw: str) -> frozenset[uuid.UUID]:
    found = set()
    for part in (p.strip() for p in raw.split(",")):
        if part:
            try:
                found.add(uuid.UUID(part))
            except ValueError:
                raise ConfigError(f"must be comma-separated user ids (UUIDs), got {part!r}") from None
    return frozenset(found)


def plain(value: object) -> str:
    """A value written as it would be in the environment (`config`, the README table)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, tuple) and value and all(isinstance(v, float) for v in value):
        return ",".join(plain(v) for v in value)  # a schedule: in its order
    if isinstance(value, tuple | frozenset):
        return ",".join(sorted(str(v) for v in value)) or "(none)"
    return str(value)
