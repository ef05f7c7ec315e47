"""Tones and silence as 8 kHz 16-bit little-endian PCM, ready to play.

Generated once per call of a helper (a ringback cycle is 96 kB), not per packet.
Cadences are the North American ones (ITU-T E.180 lists each country's).
"""

from __future__ import annotations

import math
import sys
from array import array

from phpvoip.media.wav import RATE

__all__ = ["busy", "ringback", "silence", "tone"]

_FULL_SCALE = 32767


def _samples(seconds: float) -> int:
    if seconds < 0:
        raise ValueError(f"negative duration {seconds}")
    return round(seconds * RATE)


def tone(freqs: tuple[float, ...], seconds: float, level_dbfs: float = -13.0) -> bytes:
    """The sum of sines at `freqs` for `seconds`, each at `level_dbfs` (a full-scale
    sine is 0 dBFS). Frequencies must be below 4000 Hz, the Nyquist limit at 8 kHz."""
    for f in freqs:
        if not 0 < f < RATE / 2:
            raise ValueError(f"tone frequency {f} Hz is outside 0-{RATE // 2} Hz")
    amplitude = _FULL_SCALE * 10 ** (level_dbfs / 20)
    steps = [2 * math.pi * f / RATE for f in freqs]
    out = array("h", bytes(2 * _samples(seconds)))
    for n in range(len(out)):
        value = round(amplitude * sum(math.sin(step * n) for step in steps))
        out[n] = max(-32768, min(_FULL_SCALE, value))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def silence(seconds: float) -> bytes:
    """Zero samples for `seconds`."""
    return bytes(2 * _samples(seconds))


def ringback() -> bytes:
    """One cycle of ringing tone: 440 + 480 Hz for 2 s, then 4 s of silence."""
    return tone((440.0, 480.0), 2.0) + silence(4.0)


def busy() -> bytes:
    """One cycle of busy tone: 480 + 620 Hz for 0.5 s, then 0.5 s of silence."""
    return tone((480.0, 620.0), 0.5) + silence(0.5)
