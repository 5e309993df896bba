"""What an uploaded file is, judged from its bytes alone (never its name or declared type).

- ``RIFF``/``WAVE`` with a PCM or IEEE-float format chunk (plain, or WAVE_FORMAT_EXTENSIBLE
  with one of those sub-formats) is ``audio/wav``;
- MPEG audio frames, optionally after an ID3v2 tag, are ``audio/mpeg``.

:func:`sniff` decides from the first bytes (so a wrong type is refused before the rest is
read); :func:`inspect` reads the whole spooled file: the RIFF chunk walk catches truncated
WAVs (mutagen does not), mutagen finds the MPEG frames and gives the duration of both.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

import mutagen
import mutagen.mp3
import mutagen.wave

from storage.errors import UnreadableAudio, UnsupportedAudio

WAV = "audio/wav"
MPEG = "audio/mpeg"
# Enough of the start of a file to tell its type: "RIFF" <size> "WAVE".
SNIFF_BYTES = 12

_PCM, _FLOAT, _EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
_BITS = {_PCM: {8, 16, 24, 32}, _FLOAT: {32, 64}}
_MAX_FMT_CHUNK = 1024


@dataclass(frozen=True)
class AudioInfo:
    mime_type: str
    duration: float  # seconds


def _is_mpeg_frame_header(head: bytes) -> bool:
    # 11 sync bits, a defined MPEG version (not 01) and layer (not 00).
    return (
        len(head) >= 2
        and head[0] == 0xFF
        and head[1] & 0xE0 == 0xE0
        and (head[1] >> 3) & 3 != 1
        and (head[1] >> 1) & 3 != 0
    )


def sniff(head: bytes) -> str:
    """The type of a file from its first :data:`SNIFF_BYTES` bytes (fewer only if that is all)."""
    if len(head) < SNIFF_BYTES:
        raise UnreadableAudio(f"the file is only {len(head)} bytes long: too short to be audio")
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head[:3] == b"ID3" or _is_mpeg_frame_header(head):
        return MPEG
    raise UnsupportedAudio(
        "only WAV (PCM or float) and MP3 files are accepted; this file's content is neither",
        details=[{"field": "file", "accepted": [WAV, MPEG]}],
    )


def inspect(fh: BinaryIO, size: int) -> AudioInfo:
    """Validate the whole file and read its duration. Blocking: run it in a thread."""
    fh.seek(0)
    mime_type = sniff(fh.read(SNIFF_BYTES))
    if mime_type == WAV:
        _check_wav_chunks(fh, size)
    fh.seek(0)
    try:
        parsed = mutagen.wave.WAVE(fh) if mime_type == WAV else mutagen.mp3.MP3(fh)
    except mutagen.MutagenError as exc:
        raise UnreadableAudio(f"the file looks like {_label(mime_type)} but cannot be read: {exc}") from None
    stream: Any = parsed.info  # WaveStreamInfo or MPEGInfo (mutagen types it loosely)
    if mime_type == MPEG and stream.sketchy:
        raise UnreadableAudio("the file has too few valid MPEG audio frames to be an MP3")
    duration = float(stream.length)
    if not duration > 0:
        raise UnreadableAudio(f"the {_label(mime_type)} file contains no audio")
    return AudioInfo(mime_type=mime_type, duration=round(duration, 4))


def _label(mime_type: str) -> str:
    return "a WAV" if mime_type == WAV else "an MP3"


def _check_wav_chunks(fh: BinaryIO, size: int) -> None:
    """Walk the RIFF chunks: a PCM/float ``fmt `` chunk, then a ``data`` chunk that is all there."""
    fh.seek(SNIFF_BYTES)
    position = SNIFF_BYTES
    audio_format: int | None = None
    while position + 8 <= size:
        chunk_id, length = struct.unpack("<4sI", fh.read(8))
        body_start = position + 8
        if chunk_id == b"fmt ":
            if not 16 <= length <= _MAX_FMT_CHUNK or body_start + length > size:
                raise UnreadableAudio("the WAV format chunk is malformed or cut off")
            audio_format = _check_format(fh.read(length))
        elif chunk_id == b"data":
            if audio_format is None:
                raise UnreadableAudio("the WAV data chunk comes before its format chunk")
            if body_start + length > size:
                raise UnreadableAudio(
                    f"the WAV file is truncated: its data chunk declares {length} bytes, "
                    f"{size - body_start} are present"
                )
            return
        position = body_start + length + (length & 1)  # chunks are padded to even sizes
        fh.seek(position)
    raise UnreadableAudio("the WAV file has no complete format and data chunks (truncated?)")


def _check_format(fmt: bytes) -> int:
    audio_format, channels, rate, _byte_rate, block_align, bits = struct.unpack("<HHIIHH", fmt[:16])
    if audio_format == _EXTENSIBLE and len(fmt) >= 26:
        audio_format = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID's first field
    if audio_format not in _BITS:
        raise UnsupportedAudio(
            f"WAV format 0x{audio_format:04x} is not accepted: send PCM or IEEE-float WAV",
            details=[{"field": "file", "accepted": ["PCM WAV", "float WAV"]}],
        )
    if (
        bits not in _BITS[audio_format]
        or not 1 <= channels <= 32
        or not 1000 <= rate <= 768_000
        or not block_align
    ):
        raise UnreadableAudio(
            f"the WAV format chunk is inconsistent ({channels} channels, {rate} Hz, {bits} bits)"
        )
    return audio_format
