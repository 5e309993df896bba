"""docs/events.md says what the catalogue and the settings say."""

from __future__ import annotations

import json
import re
from pathlib import Path

from events.catalogue import KINDS, MAX_KIND_LENGTH
from settings import Settings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()


def test_every_kind_is_in_the_table_with_its_meaning() -> None:
    rows = re.findall(r"^\| `([a-z_.]+)` \| (.+?) \| (.+?) \|$", DOC, re.MULTILINE)
    assert [name for name, _, _ in rows] == [k.name for k in KINDS]
    for (_name, summary, audience), kind in zip(rows, KINDS, strict=True):
        assert summary == kind.summary
        assert audience.startswith(kind.audience.value)


def test_every_loop_and_other_example_body_is_the_catalogue_s() -> None:
    bodies = [json.loads(b) for b in re.findall(r"```json\n(\{\"id\".+?)\n```", DOC)]
    expected = [k for k in KINDS if not k.name.startswith("song.")]
    assert [b["type"] for b in bodies] == [k.name for k in expected]
    assert [b["data"] for b in bodies] == [k.example for k in expected]


def test_the_documented_retry_schedule_is_the_default() -> None:
    assert Settings().webhook_retry_schedule == (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    assert "5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h" in DOC
    assert sum(Settings().webhook_retry_schedule) > 24 * 3600  # at least a day of retries


def test_kind_names_fit_their_column() -> None:
    assert all(len(k.name) <= MAX_KIND_LENGTH for k in KINDS)


def test_the_documented_python_verification_accepts_ours_and_refuses_a_change() -> None:
    import time

    from events import signing

    [code] = re.findall(r"```python\n(.+?)```", DOC, re.DOTALL)
    namespace: dict[str, object] = {}
    exec(code, namespace)  # the doc's own snippet
    verify = namespace["verify"]
    secret, body = signing.new_secret(), b'{"id":"x","type":"loop.created","data":{}}'
    headers = signing.headers(secret, "evt_x", int(time.time()), body)
    assert verify(secret, headers, body) is True  # type: ignore[operator]
    assert verify(secret, headers, body + b" ") is False  # type: ignore[operator]
    stale = signing.headers(secret, "evt_x", int(time.time()) - 3600, body)
    assert verify(secret, stale, body) is False  # type: ignore[operator]
