"""Reading recorded audio in the player's browser tests: onsets, levels and pitch of mono PCM.

The test page hands over what it heard as base64 float32 samples with the audio-context frame of
the first one, so every time here is in the audio context's seconds.
"""

from __future__ import annotations

import base64
import math
from array import array
from dataclasses import dataclass
from typing import Any

ONSET_LEVEL = 0.05  # a sound starts when a sample's magnitude first reaches this...
QUIET_LEVEL = 0.01  # ...after at least QUIET_BEFORE seconds below this one
QUIET_BEFORE = 0.05


@dataclass(frozen=True)
class Recording:
    """Mono samples and the context time of the first one."""

    rate: int
    start: float
    samples: array[float]

    @classmethod
    def decode(cls, raw: dict[str, Any]) -> Recording:
        samples = array("f")
        samples.frombytes(base64.b64decode(raw["data"]))
        rate = int(raw["sampleRate"])
        return cls(rate=rate, start=int(raw["startFrame"]) / rate, samples=samples)

    def _index(self, time: float) -> int:
        return min(len(self.samples), max(0, round((time - self.start) * self.rate)))

    def window(self, begin: float, end: float) -> array[float]:
        return self.samples[self._index(begin) : self._index(end)]

    def peak(self, begin: float, end: float) -> float:
        return max((abs(x) for x in self.window(begin, end)), default=0.0)

    def onsets(self, begin: float | None = None, end: float | None = None) -> list[float]:
        """Context times where a sound starts: the level reaches ONSET_LEVEL after a quiet spell."""
        first = self._index(self.start if begin is None else begin)
        last = len(self.samples) if end is None else self._index(end)
        quiet_needed = round(QUIET_BEFORE * self.rate)
        quiet_run = quiet_needed  # the recording's start counts as quiet
        found = []
        armed = True
        for i in range(first, last):
            level = abs(self.samples[i])
            if level < QUIET_LEVEL:
                quiet_run += 1
                if quiet_run >= quiet_needed:
                    armed = True
            else:
                quiet_run = 0
                if armed and level >= ONSET_LEVEL:
                    found.append(self.start + i / self.rate)
                    armed = False
        return found

    def pitch(self, begin: float, end: float) -> float:
        """The frequency (Hz) of a steady tone in the window, from its upward zero crossings."""
        samples = self.window(begin, end)
        crossings = [i for i in range(1, len(samples)) if samples[i - 1] < 0 <= samples[i]]
        if len(crossings) < 2:
            return 0.0
        return (len(crossings) - 1) * self.rate / (crossings[-1] - crossings[0])


def close_to(got: list[float], want: list[float], tolerance: float) -> bool:
    return len(got) == len(want) and all(
        math.isclose(g, w, abs_tol=tolerance) for g, w in zip(got, want, strict=True)
    )
