"""Helpers shared by the benchmarks: a real server process, a throwaway Postgres database,
/proc readings and latency summaries.

Used by ``bench/rest.py`` and ``bench/realtime.py``. Extended for the real-time benchmark:
extra environment, a reusable data directory and secret (to restart a server on the same
data), ``kill -9``, and a raised file-descriptor limit for thousands of sockets. For
``bench.stock``: a server run from another checkout (``checkout=``, ``--baseline``) and the
Postgres floor (``ThrowawayDatabase.commit_floor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import random
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


# --- /proc and machine helpers ----------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a whole process (all threads), in seconds."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # skip "pid (comm) "; fields[0] is field 3
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the processes of ``after`` spent since ``before`` (both by pid, as
    :meth:`ThrowawayDatabase.backends_cpu` gives them); one that started in between counts
    entirely."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def proc_status_kb(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / CLK_TCK, total / CLK_TCK


def meminfo_kb(key: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def git_dirty() -> bool | None:
    """True if the work tree has uncommitted changes (the benchmark measures the work tree)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    cpu_model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "loadavg_at_start": list(os.getloadavg()),
        "mem_total_mb": (meminfo_kb("MemTotal") or 0) // 1024 or None,
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "platform": platform.platform(),
    }


def raise_nofile_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE as far as allowed (root may raise the hard limit too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(wanted, hard), hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
    return soft


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(checkout: Path | None = None) -> list[str]:
    """The ``musicplayground`` console script of this interpreter's environment, or of
    ``checkout``'s own ``.venv`` (another commit's code, as ``bench/baseline.py`` installs it).

    ``python -m musicplayground.cli`` does not work (cli.py has no ``__main__`` guard).
    """
    if checkout is not None:
        return [str(checkout / ".venv" / "bin" / "musicplayground")]
    script = Path(sys.executable).parent / "musicplayground"
    if script.exists():
        return [str(script)]
    found = shutil.which("musicplayground")
    if found:
        return [found]
    return [sys.executable, "-c", "from musicplayground.cli import main; main()"]


# --- Postgres: a throwaway database ------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


class ThrowawayDatabase:
    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"mp_bench_{secrets.token_hex(6)}"
        self.created = False

    @property
    def url(self) -> str:
        return _with_database(self.admin_url, self.name)

    async def create(self) -> None:
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(f'CREATE DATABASE "{self.name}"')
            self.created = True
        finally:
            await conn.close()

    async def backend_pids(self) -> list[int]:
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", self.name)
        finally:
            await conn.close()
        return [int(r["pid"]) for r in rows]

    async def backends_cpu(self) -> dict[int, float]:
        """CPU seconds so far of each Postgres backend serving this database, by pid
        (the walwriter and checkpointer serve the whole cluster and are not among them)."""
        return {pid: cpu for pid in await self.backend_pids() if (cpu := proc_cpu_seconds(pid)) is not None}

    async def commit_floor(self, samples: int, idle_s: float) -> dict[str, float | None]:
        """The floor under any durable edit on this Postgres: a bare asyncpg client's one-row
        committed INSERT (autocommit: its own transaction, so a WAL flush), each after
        ``idle_s`` of idle; p50/p99/... in ms (:func:`latency_summary`)."""
        conn = await asyncpg.connect(self.url, timeout=10)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS bench_floor (id bigserial PRIMARY KEY, payload bytea NOT NULL)"
            )
            payload = os.urandom(64)  # about one small Yjs edit
            await conn.execute("INSERT INTO bench_floor (payload) VALUES ($1)", payload)  # prepares it
            times = []
            for _ in range(samples):
                await asyncio.sleep(idle_s)
                started = time.perf_counter()
                await conn.execute("INSERT INTO bench_floor (payload) VALUES ($1)", payload)
                times.append(time.perf_counter() - started)
        finally:
            await conn.close()
        return latency_summary(times)

    async def fetchval(self, query: str) -> Any:
        conn = await asyncpg.connect(self.url, timeout=10)
        try:
            return await conn.fetchval(query)
        finally:
            await conn.close()

    async def drop(self) -> None:
        if not self.created:
            return
        conn = await asyncpg.connect(self.admin_url, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False
        finally:
            await conn.close()


# --- the server under test ---------------------------------------------------------------


class ServerError(RuntimeError):
    pass


# What would make another checkout's interpreter import this checkout's code or environment.
CHECKOUT_ENV_DROPPED = ("PYTHONPATH", "PYTHONHOME", "UV_PROJECT_ENVIRONMENT")


def checkout_env(checkout: Path, env: dict[str, str]) -> dict[str, str]:
    """``env`` made to run ``checkout``'s code: its own ``.venv`` first on PATH and as
    VIRTUAL_ENV, none of ``CHECKOUT_ENV_DROPPED``."""
    venv = checkout / ".venv"
    out = {key: value for key, value in env.items() if key not in CHECKOUT_ENV_DROPPED}
    out.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    return out


def _raise_nofile_in_child() -> None:  # preexec_fn: runs in the forked child
    raise_nofile_limit()


class Server:
    """``musicplayground db upgrade`` then ``musicplayground serve`` in a fresh data dir.

    ``data_dir``/``secret`` let a second server start on the data of a first one (the
    same secret keeps issued tokens valid); ``keep_data`` leaves the directory in place.
    ``checkout``: run that directory's code with its own ``.venv`` (cwd there, none of this
    environment's ``VIRTUAL_ENV``/``PYTHONPATH``), e.g. a baseline commit.
    """

    def __init__(
        self,
        backend: str,
        database_url: str | None,
        *,
        extra_env: dict[str, str] | None = None,
        data_dir: Path | None = None,
        secret: str | None = None,
        keep_data: bool = False,
        checkout: Path | None = None,
    ) -> None:
        self.backend = backend
        self.checkout = checkout
        self.database_url = database_url
        self.extra_env = dict(extra_env or {})
        self.owns_data_dir = data_dir is None
        self.data_dir = data_dir or Path(tempfile.mkdtemp(prefix=f"mp-bench-{backend}-"))
        self.secret = secret or secrets.token_urlsafe(36)  # 48 characters
        self.keep_data = keep_data
        self.log_path = self.data_dir / f"server-{int(time.time() * 1000)}.log"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.startup_s: float | None = None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "musicplayground.sqlite3"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "PORT", "HOST"}}
        # RATE_LIMITS=off: the load comes from one user on one machine, far above real quotas.
        env.update(
            DATA_DIR=str(self.data_dir), SECRET_KEY=self.secret, LOG_LEVEL="WARNING", RATE_LIMITS="off"
        )
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.checkout is not None:
            env = checkout_env(self.checkout, env)
        env.update(self.extra_env)
        return env

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    async def start(self, startup_timeout: float = 90.0) -> None:
        started = time.perf_counter()
        env = self._env()
        cwd = self.checkout or REPO
        upgrade = await asyncio.create_subprocess_exec(
            *server_command(self.checkout),
            "db",
            "upgrade",
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await upgrade.communicate()
        if upgrade.returncode != 0:
            raise ServerError(f"`db upgrade` failed ({upgrade.returncode}):\n{out.decode(errors='replace')}")
        with self.log_path.open("wb") as log:
            # A new session: a Ctrl-C in the terminal reaches us only; we stop the server.
            self.proc = await asyncio.create_subprocess_exec(
                *server_command(self.checkout),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_raise_nofile_in_child,
            )
        deadline = time.monotonic() + startup_timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.returncode is not None:
                    raise ServerError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with session.get(
                        self.base_url + "/healthz", timeout=aiohttp.ClientTimeout(total=2)
                    ) as resp:
                        if resp.status == 200:
                            self.startup_s = round(time.perf_counter() - started, 2)
                            return
                if time.monotonic() > deadline:
                    raise ServerError(f"server not healthy after {startup_timeout:.0f}s:\n{self.log_tail()}")
                await asyncio.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_seconds(self) -> float | None:
        return proc_cpu_seconds(self.pid) if self.proc is not None else None

    def rss_kb(self) -> int | None:
        return proc_status_kb(self.pid, "VmRSS") if self.proc is not None else None

    async def kill(self) -> None:
        """``kill -9``: no shutdown hook runs (no final snapshot)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def stop(self) -> int | None:
        code = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(proc.wait(), timeout=20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                code = await proc.wait()
        elif proc is not None:
            code = proc.returncode
        if self.owns_data_dir and not self.keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return code


# --- seeding ------------------------------------------------------------------------------

PROGRESSIONS = [
    [("C", "I"), ("G", "V"), ("Am", "vi"), ("F", "IV")],
    [("Am", "i"), ("F", "VI"), ("C", "III"), ("G", "VII")],
    [("D m7", "ii"), ("G7", "V"), ("C maj7", "I"), ("A7", "VI")],
    [("E", "I"), ("C#m", "vi"), ("A", "IV"), ("B", "V")],
]
SOUNDS = ["drum-kick", "drum-snare", "drum-hihat", "drum-clap", "synth-lead", "synth-bass", "pad-warm"]
NOTES = ["C4", "D4", "E4", "G4", "A4", "C5", "E3", "G3"]


def loop_payload(i: int, rng: random.Random, *, public: bool = False) -> dict[str, Any]:
    progression = rng.choice(PROGRESSIONS)
    steps: list[dict[str, Any]] = []
    for step in range(32):
        sound = SOUNDS[(step + i) % len(SOUNDS)]
        item: dict[str, Any] = {
            "step": step,
            "soundId": sound,
            "velocity": round(rng.uniform(0.5, 1.0), 2),
            "row": step % 4,
        }
        if sound.startswith(("synth", "pad")):
            item["note"] = rng.choice(NOTES)
            item["duration16"] = rng.choice([1, 2, 4])
        steps.append(item)
    return {
        "name": f"Bench loop {i:02d}",
        "length": 4,
        "bpm": rng.randint(80, 140),
        "color": f"#{rng.randrange(0x1000000):06X}",
        "chordProgression": [
            {"bar": bar, "chord": chord, "roman": roman} for bar, (chord, roman) in enumerate(progression)
        ],
        "iconSequence": steps,
        "isPublic": public,
    }


async def anonymous_token(session: aiohttp.ClientSession, base: str) -> str:
    async with session.post(base + "/api/auth/anonymous") as resp:
        if resp.status != 201:
            raise ServerError(f"POST /api/auth/anonymous -> {resp.status}: {await resp.text()}")
        return str((await resp.json())["token"])


async def create_loop(
    session: aiohttp.ClientSession,
    base: str,
    token: str,
    i: int,
    rng: random.Random,
    *,
    public: bool = False,
) -> str:
    headers = {"Authorization": f"Bearer {token}"}
    payload = loop_payload(i, rng, public=public)
    async with session.post(base + "/api/loops", json=payload, headers=headers) as resp:
        if resp.status != 201:
            raise ServerError(f"POST /api/loops -> {resp.status}: {await resp.text()}")
        return str((await resp.json())["id"])


# --- statistics ---------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(values: Any) -> dict[str, float | None]:
    """p50/p95/p99/max/mean in ms of latencies given in seconds."""
    ms = sorted(v * 1000 for v in values)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return {
        "p50": r(percentile(ms, 50)),
        "p95": r(percentile(ms, 95)),
        "p99": r(percentile(ms, 99)),
        "max": r(ms[-1] if ms else None),
        "mean": r(sum(ms) / len(ms) if ms else None),
        "count": len(ms),
    }


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_rows(rows: Sequence[Sequence[str]], left: int = 1) -> None:
    """A plain aligned table; the first row is the header, the first ``left`` columns left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = zip(row, widths, strict=True)
        print("  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(cells)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
