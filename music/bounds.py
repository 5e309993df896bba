"""Every bound on a loop's or song's content, defined once.

The REST input models (``rest/schemas.py``), the collaborative document schema
(``music/schema.py``) and the SQL columns all read these, so whatever a document
yields also passes REST validation (GET -> PUT works) and fits its row; positions inside the
loop's length are ``music.positions``' rule (loops stored before it may hold some outside). DESIGN.md "Data
model" names the main ones; the rest are generous caps so that every string and list is bounded.
"""

from __future__ import annotations

import re
from typing import Final

MAX_NAME_LEN: Final = 100
MAX_CHORD_CELLS: Final = 64
MAX_STEPS: Final = 2048
MAX_TIMELINE_BLOCKS: Final = 512
LOOP_LENGTHS: Final = (1, 2, 4, 8)
TIME_SIGNATURES: Final = ("4/4", "3/4")
MIN_BPM: Final = 40
MAX_BPM: Final = 300
MIN_SCHEMA_VERSION: Final = 1
MAX_SCHEMA_VERSION: Final = 1000
MAX_CHORD_BAR: Final = 1023
MAX_SHORT_TEXT: Final = 20  # chord, roman, root, quality
NOTE_PATTERN: Final = r"[A-Ga-g][#b]?-?[0-9]"  # "C4", "F#3", "Bb-1"
COLOR_PATTERN: Final = r"#[0-9A-Fa-f]{6}"
MAX_SOUND_ID_LEN: Final = 64
MAX_ID_LEN: Final = 64  # timeline block id, loopId
MAX_STEP: Final = 63
MAX_ROW: Final = 3
MAX_PITCH: Final = 127
MIN_VELOCITY: Final = 0.0
MAX_VELOCITY: Final = 1.0
MIN_DURATION16: Final = 1
MAX_DURATION16: Final = 64
MAX_START_BAR: Final = 100_000
MIN_BLOCK_DURATION: Final = 1
MAX_BLOCK_DURATION: Final = 1024
MAX_META_KEYS: Final = 32  # the schema uses five; room for clients' own settings
MAX_ENTRY_FIELDS: Final = 16  # attributes of one chord cell, step or block (the schema uses <= 7)
# Neither database stores NUL (asyncpg refuses 0x00 in text and JSONB) nor a lone UTF-16
# surrogate (not encodable as UTF-8): such text is refused on input and skipped on reading.
UNSTORABLE_TEXT: Final = re.compile("[\x00\ud800-\udfff]")

DEFAULT_VELOCITY: Final = 0.8
DEFAULT_LOOP_COLOR: Final = "#FFD11A"
DEFAULT_SONG_BPM: Final = 120
DEFAULT_TIME_SIGNATURE: Final = "4/4"
