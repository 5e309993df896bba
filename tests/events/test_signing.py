"""Signatures checked by the Standard Webhooks reference library; which URLs a webhook may call."""

from __future__ import annotations

import ipaddress

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from events import signing
from events.webhook_urls import UnsafeUrl, UrlRules

PRODUCTION = UrlRules(require_https=True, allow_private=False)


def test_the_reference_library_verifies_our_signature() -> None:
    secret = signing.new_secret()
    body = b'{"id":"1","type":"loop.created","data":{}}'
    import time

    headers = signing.headers(secret, "evt_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers) == {"id": "1", "type": "loop.created", "data": {}}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(body, headers)


def test_a_known_vector() -> None:
    # The example of the Standard Webhooks specification's reference tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    assert (
        signing.signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x",  # plain http in production
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://192.168.0.5/x",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "https://[::1]/x",
        "https://localhost/x",
        "https://user:pw@hooks.example.com/x",
        "ftp://hooks.example.com/x",
    ],
)
def test_production_refuses(url: str) -> None:
    with pytest.raises(UnsafeUrl):
        PRODUCTION.check(url)


def test_production_accepts_a_public_https_url() -> None:
    assert PRODUCTION.check("https://hooks.example.com/music") == "https://hooks.example.com/music"


def test_the_setting_allows_loopback_for_tests() -> None:
    rules = UrlRules(require_https=False, allow_private=True)
    assert rules.check("http://127.0.0.1:9000/hook")
    assert rules.address_allowed(ipaddress.ip_address("10.0.0.1"))
    assert not PRODUCTION.address_allowed(ipaddress.ip_address("10.0.0.1"))
    assert PRODUCTION.address_allowed(ipaddress.ip_address("93.184.216.34"))
