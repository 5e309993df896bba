"""Real audio for the tests: WAV files written with the standard library's ``wave``, and
MPEG-1 Layer III frames assembled by hand (a valid header, zeroed side info and main data:
a decoder plays them as silence). ``tests/fixtures/silence.mp3`` was written by ``mp3_bytes()``.
"""

from __future__ import annotations

import io
import math
import struct
import wave

# MPEG-1 Layer III, no CRC | 128 kbit/s, 44.1 kHz, no padding | mono.
MP3_HEADER = bytes([0xFF, 0xFB, 0x90, 0xC0])
MP3_FRAME_BYTES = 144 * 128_000 // 44_100  # 417
MP3_SAMPLES_PER_FRAME = 1152


def wav_bytes(seconds: float = 0.5, *, rate: int = 44_100, channels: int = 1, width: int = 2) -> bytes:
    """A PCM WAV of a 440 Hz tone."""
    frames = int(seconds * rate)
    peak = (1 << (8 * width - 1)) - 1
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        samples = bytearray()
        for i in range(frames):
            value = int(peak * 0.3 * math.sin(2 * math.pi * 440 * i / rate))
            one = value.to_bytes(width, "little", signed=True) if width > 1 else bytes([value + 128 & 0xFF])
            samples += one * channels
        w.writeframes(bytes(samples))
    return out.getvalue()


def float_wav_bytes(seconds: float = 0.25, *, rate: int = 48_000) -> bytes:
    """A 32-bit IEEE float WAV (format 3), which ``wave`` cannot write: assembled here."""
    frames = int(seconds * rate)
    data = b"".join(struct.pack("<f", 0.25 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(frames))
    fmt = struct.pack("<HHIIHH", 3, 1, rate, rate * 4, 4, 32)
    body = (
        b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def mp3_bytes(frames: int = 40) -> bytes:
    """``frames`` silent MPEG audio frames (40 frames = 1.045 s)."""
    frame = MP3_HEADER + bytes(MP3_FRAME_BYTES - len(MP3_HEADER))
    return frame * frames


def id3_tag(title: str = "Test") -> bytes:
    """A minimal ID3v2.3 tag with one TIT2 frame."""
    text = b"\x00" + title.encode("latin-1")
    frame = b"TIT2" + struct.pack(">I", len(text)) + b"\x00\x00" + text
    size = len(frame)
    synchsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + synchsafe + frame
