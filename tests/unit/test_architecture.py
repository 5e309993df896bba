"""Dependencies point one way: rest -> realtime -> presence, identity -> storage -> music.

music (the document domain), settings and bus are leaves; pages (the public pages' player and
preview) sits beside rest; loadtest (the load test and its Python client) reads only music;
nothing imports the composition root (musicplayground)."""

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
    "pages",
    "music",
    "loadtest",
    "events",
}

# package -> internal packages it may import (besides itself)
ALLOWED = {
    "settings": set(),
    "bus": set(),
    "music": set(),  # the document domain: a leaf
    "storage": {"music"},
    "identity": {"storage"},  # the authenticator reads accounts
    "presence": {"bus", "music"},
    "realtime": {"bus", "presence", "storage", "identity", "music"},
    "rest": {"realtime", "presence", "storage", "identity", "settings", "music", "pages", "events"},
    # events out: the outbox, notifications (live through the Socket.IO server), webhooks
    "events": {"realtime", "storage", "identity", "bus", "music"},
    "pages": {"storage", "music"},  # the public pages' player and preview; their handlers are rest's
    "loadtest": {"music"},  # client code: speaks the wire, knows the document's layout
    "musicplayground": INTERNAL - {"musicplayground"},
}
# Frameworks of the edges: the lower layers stay free of them.
FORBIDDEN_THIRD_PARTY = {
    "storage": {"aiohttp", "socketio", "engineio"},
    "presence": {"aiohttp", "socketio", "engineio", "sqlalchemy"},
    "identity": {"sqlalchemy", "socketio"},
    "bus": {"aiohttp", "socketio", "engineio", "sqlalchemy"},
    "music": {"aiohttp", "socketio", "engineio", "sqlalchemy", "redis", "asyncpg", "pydantic"},
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
        assert "realtime.ysocketio.server" not in modules, path


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _product_modules() -> dict[str, Path]:
    return {_module_name(path): path for package in sorted(INTERNAL) for path in _files(package)}


def test_no_import_cycles_between_modules() -> None:
    """No module reaches itself through imports, lazy ones (inside functions) included: a
    backend family's base imports none of its backends; a package's factory does, lazily."""
    modules = _product_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            for target in targets:
                while target and target not in modules:  # a name inside a module: the module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    deps.add(target)
        graph[name] = deps

    def cycle_from(start: str) -> list[str] | None:
        path: list[str] = []
        on_path: set[str] = set()
        done: set[str] = set()

        def visit(node: str) -> list[str] | None:
            path.append(node)
            on_path.add(node)
            for dep in sorted(graph[node]):
                if dep in on_path:
                    return [*path[path.index(dep) :], dep]
                if dep not in done and (found := visit(dep)):
                    return found
            path.pop()
            on_path.discard(node)
            done.add(node)
            return None

        return visit(start)

    for name in sorted(graph):
        cycle = cycle_from(name)
        assert cycle is None, " -> ".join(cycle)


# One job per file: a product module longer than this needs a written reason here.
MAX_MODULE_LINES = 600
LONG_MODULES = {
    "loadtest/client.py": "one protocol client class (CollabClient): connect, sync, awareness and "
    "reconnect share one socket's state; its codec helpers are a few lines",
    "settings/table.py": "the settings table: one declarative row per setting, no logic to split",
    "rest/schemas.py": "the request and response bodies: one declarative pydantic model per body, "
    "each field with its bound and unit, no logic to split",
}


def test_no_product_module_is_longer_than_600_lines_without_a_reason() -> None:
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in _product_modules().values()
        if "migrations" not in path.parts  # generated-then-frozen schema history
    }
    too_long = {name: n for name, n in lengths.items() if n > MAX_MODULE_LINES and name not in LONG_MODULES}
    assert not too_long, f"split these (or give a reason in LONG_MODULES): {too_long}"
    # A reason is removed with the split it explains.
    stale = {name for name in LONG_MODULES if lengths.get(name, 0) <= MAX_MODULE_LINES}
    assert not stale, f"no longer over {MAX_MODULE_LINES} lines (or gone): drop from LONG_MODULES: {stale}"


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
    for path in [
        *_files("rest"),
        *(ROOT / "realtime" / "ysocketio").glob("*.py"),
        ROOT / "realtime" / "share_expiry.py",
    ]:
        tree = ast.parse(path.read_text())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not modules & SERVICE_PARTS, f"{path.relative_to(ROOT)} imports {modules & SERVICE_PARTS}"
