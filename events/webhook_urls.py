"""Which URLs a webhook may call: ``https://`` in production (Postgres), and never an address
on loopback, a private network, link-local or multicast unless
``WEBHOOK_ALLOW_PRIVATE_ADDRESSES`` is on. The address rule is applied when the host name is
resolved for each connection (:class:`PublicOnlyResolver`), so a name that later resolves to
a private address (DNS rebinding) is refused too."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

MAX_URL_LENGTH = 2048


class UnsafeUrl(ValueError):
    """A webhook URL the rules refuse (the message says which rule)."""


@dataclass(frozen=True)
class UrlRules:
    require_https: bool
    allow_private: bool

    def check(self, url: str) -> str:
        """``url`` if it may be registered; UnsafeUrl otherwise."""
        if len(url) > MAX_URL_LENGTH:
            raise UnsafeUrl(f"a webhook URL may be at most {MAX_URL_LENGTH} characters")
        parts = urlsplit(url)
        allowed = ("https",) if self.require_https else ("https", "http")
        if parts.scheme not in allowed:
            raise UnsafeUrl(f"a webhook URL must be {' or '.join(s + '://' for s in allowed)}")
        if not parts.hostname:
            raise UnsafeUrl("a webhook URL needs a host")
        if parts.username or parts.password:
            raise UnsafeUrl("a webhook URL may not carry credentials; use the signing secret")
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            if parts.hostname == "localhost" and not self.allow_private:
                raise UnsafeUrl("webhooks to localhost are not allowed") from None
            return url
        if not self.address_allowed(address):
            raise UnsafeUrl(f"webhooks to {address} (not a public address) are not allowed")
        return url

    def address_allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.allow_private:
            return True
        return address.is_global and not address.is_multicast


class PublicOnlyResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses :class:`UrlRules` allows."""

    def __init__(self, rules: UrlRules) -> None:
        self.rules = rules
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if self.rules.address_allowed(ipaddress.ip_address(r["host"]))]
        if not allowed:
            raise OSError(f"{host} resolves to no public address; webhooks to it are not allowed")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
