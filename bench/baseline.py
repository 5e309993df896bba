"""A baseline for ``bench.stock --baseline REF``: another commit's code with its own locked
environment, so its server runs beside the current one under the same load.

The checkout is ``git archive`` of the commit, extracted to ``bench/.baseline/<commit>/``
(git-ignored; nothing is registered in the repository's shared ``.git``, so a killed run
leaves no stale worktree behind), then ``uv sync --frozen --no-dev`` there makes its
``.venv`` from its own ``uv.lock`` (the server needs no dev tools). A checkout is reused
by commit hash; ``.ready`` marks a complete one, and one without it is rebuilt. No
``npm ci``: only the server runs from the baseline; the load workers and the peers run
from the current checkout's ``node_modules``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bench.common import REPO, checkout_env

CACHE = REPO / "bench" / ".baseline"
READY = ".ready"
BASE_SUFFIX = "@base"  # ours-sqlite@base: our server at the baseline commit


class BaselineError(RuntimeError):
    pass


@dataclass(frozen=True)
class Baseline:
    """A prepared checkout of ``ref`` (``commit``) at ``root``, with ``root/.venv``."""

    ref: str
    commit: str
    root: Path

    def describe(self) -> dict[str, str]:
        return {"ref": self.ref, "commit": self.commit, "checkout": str(self.root)}


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, timeout=120, check=False)


def resolve(ref: str) -> str:
    """The full commit hash ``ref`` names (a branch, tag or commit)."""
    out = _git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if out.returncode != 0 or not out.stdout.strip():
        raise BaselineError(f"--baseline {ref!r} names no commit of this repository")
    return out.stdout.decode().strip()


def _uv() -> str:
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` sets UV to itself
    if uv is None:
        raise BaselineError("uv is not on PATH (the baseline installs its locked environment with it)")
    return uv


def _extract(commit: str, root: Path) -> None:
    with subprocess.Popen(
        ["git", "archive", "--format=tar", commit], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as archive:
        assert archive.stdout is not None
        with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
            tar.extractall(root, filter="data")
        error = archive.stderr.read() if archive.stderr else b""
    if archive.returncode != 0:
        raise BaselineError(f"git archive {commit} failed: {error.decode(errors='replace')}")


def _install(root: Path) -> None:
    env = checkout_env(root, dict(os.environ))
    env.pop("VIRTUAL_ENV")  # uv sync makes the project's own .venv
    sync = subprocess.run(
        [_uv(), "sync", "--frozen", "--no-dev", "--quiet"],
        cwd=root, env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if sync.returncode != 0:
        raise BaselineError(f"uv sync --frozen in {root} failed:\n{sync.stderr[-4000:]}")


def imported_from(root: Path) -> list[str]:
    """Where ``root``'s interpreter imports the server's packages from: all must be in
    ``root`` (else the baseline would run some other checkout's code)."""
    probe = "import musicplayground, realtime; print(musicplayground.__file__, realtime.__file__)"
    python = root / ".venv" / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", probe], cwd=root, env=checkout_env(root, dict(os.environ)),
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    if out.returncode != 0:
        raise BaselineError(f"{python} cannot import the server:\n{out.stderr[-2000:]}")
    return out.stdout.split()


def prepare(ref: str, cache: Path = CACHE) -> Baseline:
    """The checkout of ``ref`` with its environment installed, made or reused (blocking:
    called once, before any measurement)."""
    commit = resolve(ref)
    root = cache / commit
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{commit}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs preparing one baseline: the second waits
        if not (root / READY).exists():
            shutil.rmtree(root, ignore_errors=True)  # an interrupted earlier attempt
            root.mkdir()
            print(f"baseline {ref} ({commit[:10]}): extracting and installing in {root}", flush=True)
            _extract(commit, root)
            # Installed in place: the venv's scripts and its editable install name this path.
            _install(root)
            (root / READY).write_text(commit + "\n")
        else:
            print(f"baseline {ref} ({commit[:10]}): reusing {root}", flush=True)
    outside = [
        path for path in imported_from(root) if not Path(path).resolve().is_relative_to(root.resolve())
    ]
    if outside:
        raise BaselineError(f"the baseline's interpreter imports code from outside {root}: {outside}")
    return Baseline(ref, commit, root)


def remove(baseline: Baseline) -> None:
    """Delete the checkout (``--drop-baseline``); the next run with that commit rebuilds it."""
    with contextlib.suppress(FileNotFoundError):
        (baseline.root / READY).unlink()
    shutil.rmtree(baseline.root, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (baseline.root.parent / f"{baseline.commit}.lock").unlink()
