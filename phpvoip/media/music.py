"""Music on hold, synthesized: a slow four-chord loop with a soft arpeggio over it.

Made in code rather than shipped as a recording so that it carries no licence
question and no file to lose; it is computed once per process (about 0.2 s of CPU)
and then the same bytes are looped for every caller who waits. The loop is built so
that playing it end to end repeats without a click: every note's envelope starts
and ends at zero inside its own chord, so the first and last samples are silence.
Pitches sit in the telephone band (300-3400 Hz carries them; a 130 Hz bass would be
filtered away by many handsets, so the bass is heard through its harmonics).
"""

from __future__ import annotations

import math
import sys
from array import array

from phpvoip.media.wav import RATE

__all__ = ["CHORD_SECONDS", "music_on_hold", "synthesize"]

CHORD_SECONDS = 2.4
_TABLE_BITS = 12
_TABLE = [math.sin(2 * math.pi * i / (1 << _TABLE_BITS)) for i in range(1 << _TABLE_BITS)]
_MASK = (1 << _TABLE_BITS) - 1


def _hz(semitones_from_a4: int) -> float:
    return 440.0 * 2 ** (semitones_from_a4 / 12)


# I - vi - IV - V in C major, as semitones from A4: (bass, chord tones, arpeggio).
_C3, _A2, _F2, _G2 = -21, -24, -28, -26
_PROGRESSION = (
    (_C3, (-9, -5, -2), (3, 7, 10, 15)),      # C: C4 E4 G4; arpeggio C5 E5 G5 C6
    (_A2, (-12, -9, -5), (0, 3, 7, 12)),      # Am: A3 C4 E4; arpeggio A4 C5 E5 A5
    (_F2, (-16, -12, -9), (-4, 0, 3, 8)),     # F: F3 A3 C4; arpeggio F4 A4 C5 F5
    (_G2, (-14, -10, -7), (-2, 2, 5, 10)),    # G: G3 B3 D4; arpeggio G4 B4 D5 G5
)


def _add_note(out: list[float], start: int, length: int, freq: float,
              partials: tuple[float, ...], attack: float, decay: float | None) -> None:
    """Mix one note into `out`: additive partials (amplitude of harmonic k+1), a
    raised-cosine attack, then either a sustain or an exponential decay, and a
    raised-cosine release over the last quarter so the note ends at exactly zero."""
    # One period of the note's waveform (its partials summed) in a table, read at
    # the note's step: one lookup a sample, whatever the number of partials.
    size = 1 << _TABLE_BITS
    wave = [sum(amp * _TABLE[(i * k) & _MASK] for k, amp in enumerate(partials, 1)) for i in range(size)]
    step = freq * size / RATE
    attack_n = max(1, int(attack * RATE))
    release_n = max(1, length // 4)
    cos, pi = math.cos, math.pi
    env = [0.5 - 0.5 * cos(pi * i / attack_n) for i in range(attack_n)]
    if decay is None:
        env += [1.0] * (length - attack_n)
    else:
        fade = math.exp(-1 / (decay * RATE))
        env += [fade**i for i in range(length - attack_n)]
    for i in range(length - release_n, length):
        env[i] *= 0.5 - 0.5 * cos(pi * (length - 1 - i) / release_n)
    for i, e in enumerate(env):
        out[start + i] += e * wave[int(step * i) & _MASK]


def synthesize(level_dbfs: float = -16.0) -> bytes:
    """One loop of the music (4 chords, 9.6 s) as 16-bit little-endian 8 kHz PCM, its
    peak at `level_dbfs`. Deterministic: the same bytes on every run and machine."""
    chord_n = int(CHORD_SECONDS * RATE)
    out = [0.0] * (chord_n * len(_PROGRESSION))
    pad = (1.0, 0.35, 0.12)
    bass = (0.3, 0.8, 0.5, 0.25)  # weak fundamental: heard through its harmonics
    pluck = (0.25, 0.125, 0.0625, 0.03)
    for index, (bass_note, chord, arpeggio) in enumerate(_PROGRESSION):
        start = index * chord_n
        _add_note(out, start, chord_n, _hz(bass_note), tuple(0.5 * a for a in bass), 0.3, None)
        for note in chord:
            _add_note(out, start, chord_n, _hz(note), tuple(0.3 * a for a in pad), 0.6, None)
        # Eight plucks a chord, up and down the arpeggio.
        pluck_n = chord_n // 8
        for j, note in enumerate(arpeggio + tuple(reversed(arpeggio))):
            _add_note(out, start + j * pluck_n, pluck_n, _hz(note), pluck, 0.01, 0.12)
    peak = max(abs(v) for v in out) or 1.0
    scale = 32767 * 10 ** (level_dbfs / 20) / peak
    samples = array("h", (round(v * scale) for v in out))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes()


_cached: bytes | None = None


def music_on_hold() -> bytes:
    """The music-on-hold loop (see synthesize), made on first use and shared after."""
    global _cached
    if _cached is None:
        _cached = synthesize()
    return _cached
