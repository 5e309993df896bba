"""The client's address behind trusted proxies (rate limits per IP, view counts)."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from aiohttp import web

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@functools.cache
def trusted_networks(proxies: tuple[str, ...]) -> Networks:
    """``TRUSTED_PROXIES`` (addresses or CIDRs, validated by settings) as networks."""
    return tuple(ipaddress.ip_network(n) for n in proxies)


def client_ip(peer: str | None, forwarded_for: Iterable[str], trusted: Networks) -> str:
    """The client's address: ``X-Forwarded-For`` is believed only as far as trusted proxies wrote it.

    Walking from the right, every hop added by a trusted proxy is skipped; the first address
    not in ``trusted`` is the client (anything left of it was written by the client itself).
    """
    address = peer or "unknown"
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    while _is_trusted(address, trusted) and hops:
        address = hops.pop()
    return address


def request_ip(request: web.BaseRequest, trusted: Networks) -> str:
    return client_ip(request.remote, request.headers.getall("X-Forwarded-For", ()), trusted)


def _is_trusted(address: str, trusted: Networks) -> bool:
    if not trusted:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
