"""The kit as a user gets it: ``npm pack``, installed in a fresh ``npm init -y`` project, used
from Node (ESM) and through a bundler; the README's example run as written, across a restart;
and the generated REST types checked against the running server's spec (drift fails)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.harness import KIT, ROOT, KitServer, npm

pytestmark = pytest.mark.timeout(1800)

README = KIT / "README.md"
EXAMPLE_MARK = "<!-- example.mjs:"

CHECK = """\
import * as kit from '@musicplayground/client'
import { ApiError, createClient, stepKey } from '@musicplayground/client'

const client = createClient({ baseUrl: process.env.SERVER })
const loop = await client.api.loops.create({ name: 'Packaged', length: 2 })
const live = client.openLoop(loop.id)
await live.whenSynced()
live.toggleStep({ step: 1, soundId: 'drum-kick' })
await live.whenSynced()
const stored = await client.api.loops.get(loop.id)
const missing = await client.api.loops.get('00000000-0000-4000-8000-000000000000').catch((e) => e)
live.close()
console.log(JSON.stringify({
  exports: Object.keys(kit).sort(),
  steps: stored.iconSequence.length,
  key: stepKey({ step: 1, soundId: 'drum-kick' }),
  notFound: missing instanceof ApiError && missing.code
}))
"""

TYPED = """\
import { createClient, ApiError, type Loop, type LiveLoop } from '@musicplayground/client'
const client = createClient({ baseUrl: 'http://localhost:3001' })
export async function rename (id: string): Promise<Loop> {
  const live: LiveLoop = client.openLoop(id)
  live.setName('typed')
  return await client.api.loops.update(id, { name: 'x', bpm: null })
}
export const isApiError = (e: unknown): boolean => e instanceof ApiError && e.status === 404
"""


def run(cmd: list[str], cwd: Path, timeout: float = 600, **kwargs: object) -> str:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    return str(result.stdout)


def readme_example() -> str:
    text = README.read_text()
    start = text.index(EXAMPLE_MARK)
    match = re.search(r"```js\n(.*?)```", text[start:], re.S)
    assert match is not None, "the README's example block is missing"
    return match.group(1)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, kit_built: None) -> Iterator[Path]:
    """A fresh project (``npm init -y``) with the packed kit (built) installed from its tarball."""
    work = tmp_path_factory.mktemp("kit-package")
    packed = json.loads(run([npm(), "pack", "--json", "--pack-destination", str(work)], KIT))
    tarball = work / packed[0]["filename"]
    files = {entry["path"] for entry in packed[0]["files"]}
    assert {"dist/index.js", "dist/index.d.ts", "package.json", "README.md"} <= files
    assert not any(path.startswith(("src/", "test/", "node_modules/")) for path in files)
    project = work / "my-app"
    project.mkdir()
    run([npm(), "init", "-y"], project)
    run([npm(), "install", "--no-audit", "--no-fund", "--prefer-offline", str(tarball)], project)
    yield project


def test_node_imports_the_packed_kit_and_uses_it(app: Path, kit_server: KitServer) -> None:
    (app / "check.mjs").write_text(CHECK)
    result = json.loads(run(["node", "check.mjs"], app, env={"PATH": _path(), "SERVER": kit_server.url}))
    assert {"ApiError", "createClient", "LiveLoop", "migrateToBackend", "LocalStorageAdapter"} <= set(
        result["exports"]
    )
    assert result["steps"] == 1 and result["key"] == '[1,null,"drum-kick",null]'
    assert result["notFound"] == "not_found"


def test_its_type_declarations_resolve_in_a_typescript_project(app: Path) -> None:
    (app / "typed.mts").write_text(TYPED)  # an ES module in a fresh (CommonJS) package
    tsc = KIT / "node_modules" / "typescript" / "bin" / "tsc"
    flags = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext"]
    run(["node", str(tsc), *flags, "--target", "es2022", "--lib", "es2022,dom", "typed.mts"], app)


def test_a_bundler_takes_it_for_browsers_and_node(app: Path, kit_server: KitServer) -> None:
    (app / "check.mjs").write_text(CHECK)
    esbuild = str(KIT / "node_modules" / ".bin" / "esbuild")
    run([esbuild, "check.mjs", "--bundle", "--platform=browser", "--format=esm", "--outfile=web.js"], app)
    assert (app / "web.js").stat().st_size > 50_000
    assert "BroadcastChannel" not in (app / "web.js").read_text()
    # socket.io-client's Node transport is CommonJS: an ESM bundle for Node gets `require` back.
    banner = (
        "--banner:js=import { createRequire } from 'module'; const require = createRequire(import.meta.url);"
    )
    run(
        [esbuild, "check.mjs", "--bundle", "--platform=node", "--format=esm", banner, "--outfile=node.mjs"],
        app,
    )
    result = json.loads(run(["node", "node.mjs"], app, env={"PATH": _path(), "SERVER": kit_server.url}))
    assert result["steps"] == 1


def test_the_readme_example_runs_as_written_and_survives_a_restart(app: Path, kit_server: KitServer) -> None:
    (app / "example.mjs").write_text(readme_example())
    log = app / "example.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["node", "example.mjs"],
            cwd=app,
            env={"PATH": _path(), "SERVER": kit_server.url},
            stdout=out,
            stderr=out,
        )
    try:
        _wait_for(lambda: "role owner" in log.read_text(), proc, log)
        time.sleep(2)  # a few steps in
        kit_server.server.terminate()
        time.sleep(2)  # more steps while the server is down
        kit_server.server.start(timeout=180)
        assert proc.wait(300) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    output = log.read_text()
    assert "server restarting" in output and "status: offline" in output
    assert "saved: 16 steps" in output
    loop_id = re.search(r"loop ([0-9a-f-]{36})", output)
    assert loop_id is not None
    # The server has them: the room is folded into the loop's row once the example leaves.
    deadline = time.monotonic() + 60
    while _stored_steps(kit_server, loop_id.group(1)) != 16:
        assert time.monotonic() < deadline, (
            f"the loop's row has {_stored_steps(kit_server, loop_id.group(1))}"
        )
        time.sleep(0.5)


def _stored_steps(server: KitServer, loop_id: str) -> int:
    with sqlite3.connect(server.data_dir / "musicplayground.sqlite3") as db:
        row = db.execute(
            "SELECT icon_sequence FROM loops WHERE id = ?", (loop_id.replace("-", ""),)
        ).fetchone()
        if row is None:
            row = db.execute("SELECT icon_sequence FROM loops WHERE id = ?", (loop_id,)).fetchone()
    return len(json.loads(row[0])) if row is not None else -1


def test_generated_types_match_the_running_servers_spec(kit_server: KitServer, kit_built: None) -> None:
    result = subprocess.run(
        ["node", "scripts/gen-types.mjs", "--url", kit_server.url, "--check"],
        cwd=KIT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"src/generated drifted from the server's spec:\n{result.stderr}"


def test_the_kits_schema_bounds_are_the_servers(kit_built: None) -> None:
    from music import bounds

    script = "import('./dist/schema.js').then((m) => console.log(JSON.stringify(m.BOUNDS)))"
    kit = json.loads(run(["node", "-e", script], KIT))
    for name, value in kit.items():
        expected = getattr(bounds, name)
        assert (list(expected) if isinstance(expected, tuple) else expected) == value, name
    assert ROOT.exists()


def _path() -> str:
    node = shutil.which("node")
    assert node is not None
    return str(Path(node).parent) + ":/usr/bin:/bin"


def _wait_for(predicate: object, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
