"""Audio type and duration from the bytes alone (the API tests cover the same over HTTP)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest

from storage import audio
from storage.errors import UnreadableAudio, UnsupportedAudio
from tests.audio_fixtures import float_wav_bytes, id3_tag, mp3_bytes, wav_bytes

FIXTURE_MP3 = Path(__file__).resolve().parents[1] / "fixtures" / "silence.mp3"


def inspect(data: bytes) -> audio.AudioInfo:
    return audio.inspect(io.BytesIO(data), len(data))


def test_the_committed_mp3_fixture_is_real_mpeg_audio() -> None:
    data = FIXTURE_MP3.read_bytes()
    assert data == mp3_bytes(40)
    info = inspect(data)
    assert info.mime_type == "audio/mpeg"
    assert info.duration == pytest.approx(40 * 1152 / 44100, abs=0.01)


@pytest.mark.parametrize(
    ("data", "mime", "seconds"),
    [
        (wav_bytes(0.5), audio.WAV, 0.5),
        (float_wav_bytes(0.25), audio.WAV, 0.25),
        (id3_tag() + mp3_bytes(20), audio.MPEG, 20 * 1152 / 44100),
    ],
)
def test_accepted(data: bytes, mime: str, seconds: float) -> None:
    info = inspect(data)
    assert info.mime_type == mime
    assert info.duration == pytest.approx(seconds, abs=0.01)


def test_extensible_wav_with_pcm_subformat_is_accepted_and_other_subformats_are_not() -> None:
    rate, frames = 8000, 800
    data = bytes(frames * 2)

    def extensible(subformat: int) -> bytes:
        fmt = struct.pack("<HHIIHH", 0xFFFE, 1, rate, rate * 2, 2, 16)
        fmt += struct.pack("<HHI", 22, 16, 0x4) + struct.pack("<H", subformat) + bytes(14)
        body = (
            b"WAVE"
            + b"fmt "
            + struct.pack("<I", len(fmt))
            + fmt
            + b"data"
            + struct.pack("<I", len(data))
            + data
        )
        return b"RIFF" + struct.pack("<I", len(body)) + body

    assert inspect(extensible(1)).duration == pytest.approx(0.1)
    with pytest.raises(UnsupportedAudio, match="0x0055"):
        inspect(extensible(0x55))  # MP3-in-WAV


@pytest.mark.parametrize(
    "head",
    [b"hello world, text", b"\x89PNG\r\n\x1a\n\0\0\0\0", b"RIFF\0\0\0\0AVI ", b"\xff\xf1\0\0" + bytes(8)],
)
def test_sniff_refuses_other_types(head: bytes) -> None:
    with pytest.raises(UnsupportedAudio):
        audio.sniff(head)


def test_sniff_needs_enough_bytes() -> None:
    with pytest.raises(UnreadableAudio, match="too short"):
        audio.sniff(b"RIFF")
