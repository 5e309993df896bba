"""Drive the real npm ``yjs`` + ``y-socket.io`` client from pytest (``tests/js/ysio-client.mjs``).

The Node script speaks JSON lines: commands on its stdin, events on its stdout (the protocol is
documented at the top of the script). Typical use::

    async with JsClient.start(url, f"loop:{loop_id}", auth={"token": token}) as js:
        await js.wait_event("synced")
        await js.command("toggle-step", step=0, soundId="drum-kick")
        content = await js.dump()          # {"meta": {...}, "chords": {...}, "steps": {...}}
        await js.wait_event("awareness", lambda e: len(e["states"]) == 2)

The Node packages are pinned in ``package.json`` / ``package-lock.json`` at the repository
root; install them with ``npm ci``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "SCRIPT",
    "JsClient",
    "JsClientError",
]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "js" / "ysio-client.mjs"
# The stock client of each wire, and what Node needs to run it (Node 20 has WebSocket, the
# y-websocket provider's default, behind a flag).
WIRES: dict[str, tuple[Path, tuple[str, ...]]] = {
    "socket.io": (SCRIPT, ()),
    "y-websocket": (ROOT / "tests" / "js" / "yws-client.mjs", ("--experimental-websocket",)),
}
NODE_MODULES = ROOT / "node_modules"
HARNESS_MISSING = "node and the npm packages are needed: run `npm ci` at the repository root"

Event = dict[str, Any]


def _harness_ready() -> bool:
    """Whether ``node`` is on PATH and ``npm ci`` installed the pinned packages."""
    return shutil.which(os.environ.get("NODE", "node")) is not None and all(
        (NODE_MODULES / name / "package.json").exists()
        for name in ("yjs", "y-socket.io", "socket.io-client", "y-websocket")
    )


class JsClientError(Exception):
    """The harness failed, exited, or a command was refused (the message has its stderr tail)."""


class JsClient:
    """One Node process running one ``SocketIOProvider`` for one document.

    Attributes:
        events: Every event the script printed, in order (each a dict with ``"event"``).
        client_id: The provider's Yjs client id (from the ``ready`` event).
        stderr: What the script wrote on stderr so far.
    """

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self.client_id: int | None = None
        self.stderr = ""
        self._next_id = 0
        self._wakeup = asyncio.Event()
        self._stdout_task = asyncio.create_task(self._read_stdout())
        self._stderr_task = asyncio.create_task(self._read_stderr())

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def start(
        cls,
        url: str,
        room: str,
        *,
        auth: dict[str, Any] | None = None,
        path: str | None = None,
        auto_connect: bool = True,
        node: str | None = None,
        startup_timeout: float = 20,
        wire: str = "socket.io",
    ) -> _Starter:
        """Spawn the script. ``room`` is ``"loop:<uuid>"`` or ``"song:<uuid>"``; ``auth`` the
        handshake auth (``{"token": ...}`` or ``{"shareToken": ...}``); ``path`` the Engine.IO
        path if not ``/socket.io``; ``wire`` the stock client: ``"socket.io"`` (y-socket.io's
        ``SocketIOProvider``) or ``"y-websocket"`` (``WebsocketProvider`` on ``<url>/ws``, ``auth``
        as its query ``params``). Use as ``async with JsClient.start(...) as js`` or
        ``js = await JsClient.start(...)`` (then ``await js.close()``)."""
        if not _harness_ready():  # a missing harness fails the test; it is never skipped
            raise JsClientError(HARNESS_MISSING)
        config: dict[str, Any] = {
            "url": url,
            "room": room,
            "auth": auth or {},
            "autoConnect": auto_connect,
            "wire": wire,
        }
        if path is not None:
            config["path"] = path
        return _Starter(cls, config, node or os.environ.get("NODE", "node"), startup_timeout)

    @classmethod
    async def _spawn(cls, config: dict[str, Any], node: str, startup_timeout: float) -> JsClient:
        script, flags = WIRES[config["wire"]]
        proc = await asyncio.create_subprocess_exec(
            node,
            *flags,
            str(script),
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=str(ROOT),
            limit=16 * 1024 * 1024,  # a dump of a big document is one line
        )
        client = cls(proc)
        try:
            ready = await client.wait_event("ready", timeout=startup_timeout)
        except BaseException:
            await client.close()
            raise
        client.client_id = int(ready["clientId"])
        return client

    async def close(self, timeout: float = 10) -> int | None:
        """Ask the script to close (``provider.destroy()``), then make sure the process is gone.
        Returns the exit code."""
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                await self.send("close")
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for task in (self._stdout_task, self._stderr_task):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, 5)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
            with contextlib.suppress(Exception):
                await self.proc.stdin.wait_closed()
        return self.proc.returncode

    async def __aenter__(self) -> JsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ commands

    async def send(self, cmd: str, **args: Any) -> None:
        """Write one command line without waiting for its answer."""
        if self.proc.stdin is None or self.proc.returncode is not None:
            raise JsClientError(f"the harness has exited ({self.proc.returncode}){self._stderr_tail()}")
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()

    async def command(self, cmd: str, *, timeout: float = 10, **args: Any) -> Event:
        """Run a command and return its ``done`` event (e.g. ``toggle-step`` gives ``key``, ``on``).

        Raises:
            JsClientError: the script answered ``command-error`` or exited.
        """
        self._next_id += 1
        cid = self._next_id
        start = len(self.events)
        await self.send(cmd, ref=cid, **args)
        event = await self.wait_event(
            ("done", "command-error"), lambda e: e.get("ref") == cid, timeout=timeout, since=start
        )
        if event["event"] == "command-error":
            raise JsClientError(f"{cmd}: {event.get('message')}")
        return event

    async def dump(self, timeout: float = 10) -> dict[str, Any]:
        """The document as plain JSON: ``{meta, chords, steps}`` (loop) or ``{meta, timeline}``
        (song); also the latest ``dump`` event is in :attr:`events` with ``states``."""
        start = len(self.events)
        done = await self.command("dump", timeout=timeout)
        event = await self.wait_event("dump", lambda e: e.get("ref") == done["ref"], since=start)
        return dict(event["content"])

    async def awareness_states(self, timeout: float = 10) -> dict[int, Any]:
        """All awareness states the provider knows, by client id (its own included)."""
        start = len(self.events)
        done = await self.command("dump", timeout=timeout)
        event = await self.wait_event("dump", lambda e: e.get("ref") == done["ref"], since=start)
        return {int(k): v for k, v in event["states"].items()}

    # ------------------------------------------------------------------ events

    def of(self, name: str) -> list[Event]:
        """The events named ``name`` received so far."""
        return [e for e in self.events if e.get("event") == name]

    async def wait_event(
        self,
        name: str | tuple[str, ...],
        predicate: Callable[[Event], bool] | None = None,
        *,
        timeout: float = 10,
        since: int = 0,
    ) -> Event:
        """The first event (at index >= ``since``) named ``name`` (or one of the names) that
        satisfies ``predicate``; waits for it.

        Raises:
            TimeoutError: none within ``timeout`` s (the message lists what did arrive).
            JsClientError: the script exited first, or reported ``fatal``.
        """
        names = (name,) if isinstance(name, str) else name
        deadline = time.monotonic() + timeout
        index = since
        while True:
            while index < len(self.events):
                event = self.events[index]
                index += 1
                if event.get("event") == "fatal":
                    raise JsClientError(f"harness failure: {event.get('message')}{self._stderr_tail()}")
                if event.get("event") in names and (predicate is None or predicate(event)):
                    return event
            if self._stdout_task.done():
                raise JsClientError(
                    f"the harness exited ({self.proc.returncode}) while waiting for {names}"
                    f"{self._stderr_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                recent = [e.get("event") for e in self.events[since:]][-30:]
                raise TimeoutError(f"no {names} event within {timeout} s; got {recent}{self._stderr_tail()}")
            wakeup = self._wakeup
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), remaining)

    def _notify(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {"event": "garbage", "line": line.decode(errors="replace")}
                if not isinstance(event, dict):
                    event = {"event": "garbage", "line": line.decode(errors="replace")}
                self.events.append(event)
                self._notify()
        finally:
            self._notify()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk.decode(errors="replace")

    def _stderr_tail(self) -> str:
        return f"\nstderr:\n{self.stderr[-2000:]}" if self.stderr.strip() else ""


class _Starter:
    """Awaitable and async context manager returned by :meth:`JsClient.start`."""

    def __init__(self, cls: type[JsClient], config: dict[str, Any], node: str, timeout: float) -> None:
        self._args = (config, node, timeout)
        self._cls = cls
        self._client: JsClient | None = None

    def __await__(self) -> Any:
        return self._cls._spawn(*self._args).__await__()

    async def __aenter__(self) -> JsClient:
        self._client = await self._cls._spawn(*self._args)
        return self._client

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.close()
