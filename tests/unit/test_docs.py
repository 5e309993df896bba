"""The documentation agrees with the code wherever a test can check it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, cast

import pytest

from musicplayground.app import readiness_checks
from settings import FIELDS, README_TABLE_END, README_TABLE_START, Settings
from storage import explore
from storage.models import Loop, Song

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(markdown: str) -> str:
    """The text without fenced code blocks and inline code (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M))


def _anchors(markdown: str) -> set[str]:
    """The heading anchors a forge makes: lower case, punctuation dropped, spaces to hyphens,
    ``-1``, ``-2``… for repeated headings."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(
        r"^#{1,6}\s+(.+?)\s*#*$", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M), re.M
    ):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(doc.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto:… are not ours to check
            continue
        path, _, anchor = target.partition("#")
        destination = (doc.parent / path).resolve() if path else doc
        if not destination.exists():
            broken.append(target)
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination.read_text()):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_settings_named_in_the_docs_have_their_defaults(doc: Path) -> None:
    """A default written beside a setting's name (a table row, or `NAME` (8) in prose) is the
    settings table's: the README's table is generated, every other mention is checked here."""
    text = doc.read_text()
    if doc.name == "README.md":
        text = text.split(README_TABLE_START)[0] + text.split(README_TABLE_END)[1]
    defaults = dict(Settings().describe())
    rows = {row.env: row for row in FIELDS}
    wrong = []
    for env, cell in re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \| ([^|]+) \|", text, re.M):
        row = rows.get(env)
        expected = row.shown_default if row and row.shown_default else defaults.get(env)
        if expected is not None and cell.replace("`", "").strip() != expected.replace("`", "").strip():
            wrong.append((env, cell.strip(), expected))
    for env, number in re.findall(r"`([A-Z][A-Z0-9_]*)` \((\d+(?:\.\d+)?)\)", text):
        if env in defaults and number != defaults[env]:
            wrong.append((env, number, defaults[env]))
    assert not wrong, f"{doc.relative_to(ROOT)}: (setting, written, table) {wrong}"
    assert "|" not in "".join(str(r.doc) for r in FIELDS)  # a doc line never breaks the table


def test_operations_names_every_readiness_check_and_the_backlog_code() -> None:
    placeholder = cast(Any, None)  # the checks are only named here, never run
    names = [check.name for check in readiness_checks(*[placeholder] * 5)]
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("`/readyz` runs", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, re.M)
    assert documented == names, "docs/operations.md: the /readyz table, in the code's order"
    # The code a refused edit carries when the database cannot keep up (realtime's error event).
    assert "storage_backlog" in text and "storage_unavailable" not in text
    assert any("storage_backlog" in p.read_text() for p in (ROOT / "realtime").rglob("*.py"))


def test_community_explore_sorts_are_the_code() -> None:
    text = (ROOT / "docs" / "community.md").read_text()
    (sorts,) = re.findall(r"sort=([a-z|]+)&", text)
    assert sorts.split("|") == list(explore.SORT_COLUMNS)
    models: dict[str, type[Loop] | type[Song]] = {"loop": Loop, "song": Song}
    refused = [
        (kind, sort)
        for kind, m in models.items()
        for sort in explore.SORT_COLUMNS
        if not explore.sortable(m, sort)
    ]
    for kind, sort in refused:
        assert f"`sort={sort}` with `type={kind}` is a 400" in text
    if not refused:
        assert "Every sort applies to both types" in text and "is a 400" not in text


def test_readme_says_where_the_command_is_after_serve() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "`.venv/bin/musicplayground`" in readme and "uv run musicplayground" in readme
    # scripts/serve installs into the project's virtual environment, whose bin/ holds the script.
    assert "uv sync --frozen" in (ROOT / "scripts" / "serve").read_text()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "musicplayground" in scripts
    assert (Path(sys.prefix) / "bin" / "musicplayground").exists()


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        (".schemathesis/", True),
        ("bench/results/2026-12-07-stock.json", True),
        ("bench/results/2026-12-07-stock.md", False),
        ("bench/results/prof/server.svg", True),
        ("data/", True),
    ],
)
def test_gitignore(path: str, ignored: bool) -> None:
    check = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=ROOT, check=False)
    assert check.returncode == (0 if ignored else 1), (path, check.returncode)


QUICK_SELECTION = "not postgres and not npm"


def test_the_quick_tier_selects_no_postgres_test() -> None:
    """README: `scripts/test --quick` runs tests/unit and tests/api with -m "not postgres and not npm"."""
    readme = (ROOT / "README.md").read_text()
    assert "scripts/test --quick" in readme
    assert f'tests/unit tests/api -m "{QUICK_SELECTION}"' in (ROOT / "scripts" / "test").read_text()
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", QUICK_SELECTION, "tests/api"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert collected.returncode == 0, collected.stdout[-2000:] + collected.stderr[-2000:]
    ids = [line for line in collected.stdout.splitlines() if "::" in line]
    assert any("[sqlite" in i for i in ids) and not any("postgres" in i for i in ids)


def test_the_client_guide_lists_every_error_code_of_the_live_path() -> None:
    """docs/realtime.md's error table names every ``error`` event code (realtime.errors.ErrorCode)."""
    from realtime.errors import ErrorCode

    guide = (ROOT / "docs" / "realtime.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", guide, flags=re.M))
    missing = {code.value for code in ErrorCode} - {ErrorCode.ROOM_FULL.value} - listed
    assert not missing, f"docs/realtime.md does not list {sorted(missing)}"
