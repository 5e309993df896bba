"""The files the public pages load, served by this server under immutable hashed URLs.

Three groups, each at ``/static/<group>/<hash>/<file>``, where ``<hash>`` is a digest of the
group's bytes: a new release of any file is a new URL, so a browser may keep every answer for
a year (``immutable``) and never asks twice. Nothing comes from a CDN.

- ``player``: this package's ``static/`` modules (the player and the page's own script); one
  hash for the directory, so the modules' relative imports stay inside one version;
- ``vendor``: Tone.js and tonal, the browser builds installed by npm (root ``package.json``);
- ``live``: the client kit's browser bundle (``clients/js``, ``npm run build``), which the page
  loads to follow the document live. Without it the page still plays, but does not follow.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLAYER_DIR = Path(__file__).resolve().parent / "static"
PLAYER_FILES = ("page.js", "player.js", "kit.js", "pattern.js", "pitch.js", "time.js")
VENDOR_FILES = {
    "Tone.js": ROOT / "node_modules" / "tone" / "build" / "Tone.js",
    "tonal.min.js": ROOT / "node_modules" / "tonal" / "browser" / "tonal.min.js",
}
LIVE_FILES = {"kit.js": ROOT / "clients" / "js" / "dist" / "browser" / "kit.js"}
IMMUTABLE = "public, max-age=31536000, immutable"
CONTENT_TYPES = {".js": "text/javascript; charset=utf-8"}


@dataclass(frozen=True)
class AssetGroup:
    name: str
    digest: str
    files: dict[str, Path]

    def url(self, file: str) -> str:
        return f"/static/{self.name}/{self.digest}/{file}"


def _group(name: str, files: dict[str, Path]) -> AssetGroup | None:
    present = {file: path for file, path in files.items() if path.is_file()}
    if len(present) != len(files):
        return None
    digest = hashlib.blake2b(digest_size=8)
    for file in sorted(present):
        digest.update(file.encode() + b"\0" + present[file].read_bytes())
    return AssetGroup(name, digest.hexdigest(), present)


@dataclass(frozen=True)
class PageAssets:
    """Every group found on disk; a group with a file missing is ``None``."""

    player: AssetGroup | None
    vendor: AssetGroup | None
    live: AssetGroup | None

    def find(self, group: str, digest: str, file: str) -> Path | None:
        found = {"player": self.player, "vendor": self.vendor, "live": self.live}.get(group)
        if found is None or found.digest != digest:
            return None
        return found.files.get(file)


def load_assets() -> PageAssets:
    """Hash the files once (at start-up)."""
    return PageAssets(
        player=_group("player", {file: PLAYER_DIR / file for file in PLAYER_FILES}),
        vendor=_group("vendor", dict(VENDOR_FILES)),
        live=_group("live", dict(LIVE_FILES)),
    )


@functools.cache
def page_assets() -> PageAssets:
    """The assets of this process (hashed on first use)."""
    return load_assets()
