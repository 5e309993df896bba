"""What the pages show for a sound id: a name and a colour (how it sounds is pages/static/kit.js)."""

from __future__ import annotations

import colorsys
import hashlib
from collections.abc import Mapping

SAMPLE_PREFIX = "sample:"

# The composer's built-in sounds, in the order the pages list their lanes.
KIT: dict[str, tuple[str, str]] = {
    "drum-kick": ("Kick", "#FF5C8A"),
    "drum-snare": ("Snare", "#FFD11A"),
    "drum-hihat": ("Hi-hat", "#7BDCFF"),
    "bass-sub": ("Sub bass", "#7B61FF"),
    "synth-lead": ("Lead", "#3DDC97"),
    "synth-pad": ("Pad", "#B8A8FF"),
    "synth-pluck": ("Pluck", "#FF9F43"),
}


def sound_label(sound_id: str, sample_names: Mapping[str, str] | None = None) -> str:
    """The kit sound's name; an uploaded sample's name (or "Sample"); any other id as it is."""
    if sound_id in KIT:
        return KIT[sound_id][0]
    if sound_id.startswith(SAMPLE_PREFIX):
        return (sample_names or {}).get(sound_id.removeprefix(SAMPLE_PREFIX)) or "Sample"
    return sound_id


def sound_color(sound_id: str) -> tuple[int, int, int]:
    """The kit sound's colour, or a stable colour derived from the id."""
    if sound_id in KIT:
        hex_color = KIT[sound_id][1]
        return (int(hex_color[1:3], 16), int(hex_color[3:5], 16), int(hex_color[5:7], 16))
    return hue_color(sound_id)


def hue_color(text: str) -> tuple[int, int, int]:
    """A bright colour picked by a hash of ``text`` (the same on every machine and run)."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
    hue = int.from_bytes(digest[:2], "big") % 360
    r, g, b = colorsys.hls_to_rgb(hue / 360, 0.62, 0.7)
    return (round(r * 255), round(g * 255), round(b * 255))


def lane_order(sound_ids: set[str]) -> list[str]:
    """Kit sounds in the kit's order, then samples and other ids alphabetically."""
    kit = [s for s in KIT if s in sound_ids]
    return kit + sorted(sound_ids - set(KIT))
