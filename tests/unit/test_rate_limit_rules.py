"""Pure rules of the rate limiter: the client IP behind proxies, what counts where, the settings."""

from __future__ import annotations

import ipaddress

import pytest

from rest.rate_limits import RateLimiter, client_ip
from settings import ConfigError, Settings
from storage.counters import open_counters

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.7", [], "198.51.100.7"),
        ("198.51.100.7", ["203.0.113.1"], "198.51.100.7"),  # not a proxy: header ignored
        ("10.0.0.2", ["203.0.113.1"], "203.0.113.1"),
        ("10.0.0.2", ["192.0.2.9, 203.0.113.1"], "203.0.113.1"),  # left part written by the client
        ("10.0.0.2", ["203.0.113.1, 10.0.0.3"], "203.0.113.1"),  # two proxies in a row
        ("10.0.0.2", ["203.0.113.1", "10.0.0.3"], "203.0.113.1"),  # the header repeated
        ("10.0.0.2", ["10.0.0.4, 10.0.0.3"], "10.0.0.4"),  # every hop trusted: the first one
        ("::1", ["2001:db8::5"], "2001:db8::5"),
        ("10.0.0.2", [], "10.0.0.2"),
        (None, [], "unknown"),
    ],
)
def test_client_ip(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert client_ip(peer, forwarded, PROXIES) == expected


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    assert client_ip("10.0.0.2", ["203.0.113.1"], ()) == "10.0.0.2"


def test_which_quotas_a_request_counts_against() -> None:
    limiter = RateLimiter(open_counters(None), Settings())
    names = {
        (method, path): [q.name for q in limiter.quotas_for(method, path)]
        for method, path in [
            ("GET", "/api/loops"),
            ("HEAD", "/api/loops"),
            ("POST", "/api/loops"),
            ("PATCH", "/api/loops/x"),
            ("DELETE", "/api/songs/x"),
            ("POST", "/api/samples/upload"),
            ("POST", "/api/migrate"),
            ("OPTIONS", "/api/loops"),
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/metrics"),
            ("GET", "/api/openapi.json"),
            ("GET", "/socket.io/"),
        ]
    }
    assert names == {
        ("GET", "/api/loops"): ["get"],
        ("HEAD", "/api/loops"): ["get"],
        ("POST", "/api/loops"): ["mutations"],
        ("PATCH", "/api/loops/x"): ["mutations"],
        ("DELETE", "/api/songs/x"): ["mutations"],
        ("POST", "/api/samples/upload"): ["mutations", "uploads"],
        ("POST", "/api/migrate"): ["mutations"],  # the migration quota is charged by its handler
        ("OPTIONS", "/api/loops"): [],
        ("GET", "/healthz"): [],
        ("GET", "/readyz"): [],
        ("GET", "/metrics"): [],
        ("GET", "/api/openapi.json"): [],
        ("GET", "/socket.io/"): [],
    }


def test_settings_defaults_and_parsing() -> None:
    defaults = Settings.from_env({})
    assert defaults.rate_limits_enabled
    assert (
        defaults.rate_limit_get_per_hour,
        defaults.rate_limit_mutations_per_hour,
        defaults.rate_limit_uploads_per_hour,
        defaults.rate_limit_migrations_per_hour,
        defaults.rate_limit_anonymous_accounts_per_ip_per_hour,
        defaults.rate_limit_socket_connects_per_ip_per_minute,
    ) == (1000, 100, 20, 1, 30, 120)
    assert defaults.trusted_proxies == ()
    custom = Settings.from_env(
        {"RATE_LIMITS": "off", "RATE_LIMIT_GET_PER_HOUR": "5", "TRUSTED_PROXIES": "10.1.2.3/8, ::1"}
    )
    assert not custom.rate_limits_enabled and custom.rate_limit_get_per_hour == 5
    assert custom.trusted_proxies == ("10.0.0.0/8", "::1/128")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RATE_LIMITS": "sometimes"}, "RATE_LIMITS must be on or off"),
        ({"RATE_LIMIT_GET_PER_HOUR": "0"}, "RATE_LIMIT_GET_PER_HOUR must be >= 1"),
        ({"RATE_LIMIT_UPLOADS_PER_HOUR": "many"}, "RATE_LIMIT_UPLOADS_PER_HOUR must be an integer"),
        (
            {"TRUSTED_PROXIES": "10.0.0.0/8,proxy.internal"},
            "TRUSTED_PROXIES must be IP addresses or networks, got 'proxy.internal'",
        ),
    ],
)
def test_bad_settings_are_refused_with_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)
