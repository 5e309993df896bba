"""Small helpers for API tests."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, keyed by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def sign_up(client: TestClient) -> dict[str, Any]:
    """A new anonymous account: ``{token, refreshToken, expiresIn, user}``."""
    resp = await client.post("/api/auth/anonymous")
    assert resp.status == 201, await resp.text()
    return dict(await resp.json())


async def expect_error(resp: Any, status: int, code: str | None = None) -> dict[str, Any]:
    """Assert the DESIGN.md error shape and return the body."""
    body = await resp.json()
    assert resp.status == status, body
    assert isinstance(body["error"], str) and body["error"], body
    assert isinstance(body["code"], str) and body["code"], body
    assert isinstance(body["details"], list), body
    if code is not None:
        assert body["code"] == code, body
    return dict(body)


LOOP: dict[str, Any] = {
    "name": "Pop I-V-vi-IV",
    "length": 4,
    "bpm": 120,
    "color": "#FFD11A",
    "chordProgression": [{"bar": 0, "chord": "C maj7", "roman": "I"}, {"bar": 4, "chord": "G"}],
    "iconSequence": [
        {"step": 0, "soundId": "drum-kick", "velocity": 1.0},
        {"step": 4, "soundId": "synth-lead", "note": "G4"},
    ],
    "isPublic": False,
}

SONG: dict[str, Any] = {
    "name": "First song",
    "bpm": 110,
    "timeSignature": "4/4",
    "timeline": [
        {"id": "block-1", "loopId": "loop-a", "startBar": 0, "duration": 4},
        {"id": "block-2", "loopId": "loop-b", "startBar": 4, "bars": 8, "color": "#7B61FF"},
    ],
}


async def eventually(predicate: Any, timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it is truthy (for conditions spanning several clients)."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
