"""Generated tones: length, level, frequency content and cadence."""

from __future__ import annotations

import math
import struct

import pytest

from phpvoip.media.tones import busy, ringback, silence, tone


def samples(pcm: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


def power_at(pcm: bytes, freq: float) -> float:
    """Goertzel power of `freq` in `pcm`, normalised by length (a DTMF detector's tool)."""
    coeff = 2 * math.cos(2 * math.pi * freq / 8000)
    s1 = s2 = 0.0
    values = samples(pcm)
    for x in values:
        s1, s2 = x + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / len(values) ** 2


def test_a_tone_has_its_length_and_level():
    """One second is 8000 samples; a -13 dBFS sine peaks at 22.4 % of full scale."""
    pcm = tone((1000.0,), 1.0)
    values = samples(pcm)
    assert len(values) == 8000
    assert max(values) == pytest.approx(32767 * 10 ** (-13 / 20), abs=2)
    assert values[0] == 0 and values[2] == round(32767 * 10 ** (-13 / 20))  # 1 kHz: a quarter period is 2


def test_a_full_scale_tone_does_not_wrap():
    """0 dBFS reaches full scale and clips rather than overflowing."""
    values = samples(tone((400.0, 500.0), 0.1, level_dbfs=0))
    assert max(values) == 32767 and min(values) == -32768


def test_dual_tone_holds_both_frequencies_and_nothing_else():
    """440 + 480 Hz is strong at both and weak at a frequency it does not contain."""
    pcm = tone((440.0, 480.0), 0.5)
    strong = min(power_at(pcm, 440), power_at(pcm, 480))
    assert strong > 1000 * power_at(pcm, 1000)


def test_silence_is_zero_samples():
    """Half a second of silence is 4000 zero samples."""
    assert silence(0.5) == bytes(8000)
    assert silence(0) == b""


def test_ringback_and_busy_cadences():
    """Ringback is 2 s on and 4 s off; busy 0.5 s on and 0.5 s off."""
    ring = ringback()
    assert len(ring) == 6 * 16000
    assert any(ring[: 2 * 16000]) and not any(ring[2 * 16000 :])
    assert power_at(ring[:16000], 480) > 1000 * power_at(ring[:16000], 620)
    engaged = busy()
    assert len(engaged) == 16000
    assert any(engaged[:8000]) and not any(engaged[8000:])
    assert power_at(engaged[:8000], 620) > 1000 * power_at(engaged[:8000], 440)


@pytest.mark.parametrize(("freqs", "seconds"), [((0.0,), 1), ((4000.0,), 1), ((-5.0,), 1), ((440.0,), -1)])
def test_impossible_tones_are_refused(freqs, seconds):
    """Frequencies outside 0-4000 Hz and negative durations are errors."""
    with pytest.raises(ValueError):
        tone(freqs, seconds)
