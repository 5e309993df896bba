"""docs/realtime.md's Python example (docs/examples/realtime_edit.py) runs against a live server."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.helpers import bearer

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "realtime_edit.py"
GUIDE = ROOT / "docs" / "realtime.md"


def test_the_guide_quotes_the_example_file() -> None:
    example = EXAMPLE.read_text()
    body = example[example.index("import asyncio") :]
    assert f"```python\n{body}```" in GUIDE.read_text()


async def test_the_python_example_edits_live_and_sees_a_rename(
    client: TestClient, base_url: str, owner: dict[str, Any], loop: dict[str, Any]
) -> None:
    auth = bearer(owner["token"])
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        base_url,
        loop["id"],
        owner["token"],
        "30",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    async def edited() -> bool:
        got = await (await client.get(f"/api/loops/{loop['id']}", headers=auth)).json()
        return got["bpm"] == 100 and any(
            s["step"] == 8 and s["soundId"] == "drum-snare" for s in got["iconSequence"]
        )

    try:
        deadline = asyncio.get_running_loop().time() + 30
        while not await edited():  # the example's edit reached the server
            assert asyncio.get_running_loop().time() < deadline, "the example's edit never arrived"
            await asyncio.sleep(0.1)
        resp = await client.patch(f"/api/loops/{loop['id']}", json={"name": "Renamed"}, headers=auth)
        assert resp.status == 200, await resp.text()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "role: owner" in text and f"'name': {loop['name']!r}" in text, text
    assert "renamed: Renamed" in text and "server errors: []" in text, text
