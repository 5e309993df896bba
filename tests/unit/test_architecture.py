"""Dependencies point one way: rest -> realtime -> presence, storage; identity, settings, bus and
music (the document domain): leaves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTERNAL = {
    "musicplayground",
    "rest",
    "realtime",
    "presence",
    "storage",
    "identity",
    "settings",
    "bus",
    "music",
}

# package -> internal packages it may import (besides itself)
ALLOWED = {
    "settings": set(),
    "identity": set(),
    "bus": set(),
    "music": set(),
    "storage": {"identity", "music"},
    "presence": {"bus", "music"},
    "realtime": {"bus", "presence", "storage", "identity", "music"},
    "rest": {"realtime", "presence", "storage", "identity", "settings", "music"},
    "musicplayground": INTERNAL - {"musicplayground"},
}
# Frameworks of the edges: the lower layers stay free of them.
FORBIDDEN_THIRD_PARTY = {
    "storage": {"aiohttp", "socketio", "engineio"},
    "presence": {"aiohttp", "socketio", "engineio", "sqlalchemy"},
    "identity": {"sqlalchemy", "socketio"},
    "bus": {"aiohttp", "socketio", "engineio", "sqlalchemy"},
    "music": {"aiohttp", "socketio", "engineio", "sqlalchemy", "redis", "asyncpg"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _files(package: str) -> list[Path]:
    module = ROOT / f"{package}.py"
    return [module] if module.exists() else sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_it_may(package: str) -> None:
    files = _files(package)
    assert files, package
    for path in files:
        imported = _imports(path)
        internal = (imported & INTERNAL) - {package}
        assert internal <= ALLOWED[package], f"{path.relative_to(ROOT)} imports {internal - ALLOWED[package]}"
        banned = imported & FORBIDDEN_THIRD_PARTY.get(package, set())
        assert not banned, f"{path.relative_to(ROOT)} imports {banned}"


def test_nothing_imports_the_composition_root() -> None:
    for package in sorted(INTERNAL - {"musicplayground"}):
        for path in _files(package):
            assert "musicplayground" not in _imports(path), path


def test_rest_uses_the_document_service_not_the_sockets() -> None:
    for path in _files("rest"):
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert "realtime.sockets" not in modules, path


def test_presence_has_its_behaviour_without_the_real_time_layer() -> None:
    """Presence across instances (heartbeats, expiry, awareness coalescing) lives in presence/,
    which is handed rooms and a way to publish: it imports neither realtime nor storage."""
    assert (ROOT / "presence" / "cluster.py").exists()
    for path in _files("presence"):
        assert not _imports(path) & {"realtime", "storage"}, path


# The parts of the document service: rest and the Socket.IO edge use its façade only.
SERVICE_PARTS = {
    f"realtime.{name}" for name in ("registry", "persistence", "relay", "access", "names", "tasks")
}


def test_rest_and_the_sockets_use_the_document_service_facade_not_its_parts() -> None:
    for path in [*_files("rest"), ROOT / "realtime" / "sockets.py", ROOT / "realtime" / "share_expiry.py"]:
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not modules & SERVICE_PARTS, f"{path.relative_to(ROOT)} imports {modules & SERVICE_PARTS}"
