"""G.711 against the recommendation's own tables, not against the codec's output.

The reference decoders below are written from ITU-T G.711 (Tables 1a/2a, A-law;
1b/2b, μ-law): a character is a sign bit, a 3-bit segment and a 4-bit step; A-law
characters go on the line with the even bits inverted (XOR 0x55), μ-law characters
with all magnitude bits inverted. Decoded values are scaled to 16 bits (A-law's
13-bit range times 8, μ-law's 14-bit range times 4).
"""

from __future__ import annotations

import struct

import pytest

from phpvoip.media.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL_SAMPLES = struct.pack("<65536h", *range(-32768, 32768))


def reference_ulaw(code: int) -> int:
    """G.711 μ-law decoder output for `code`, in 16-bit units."""
    magnitude_bits = code ^ 0x7F  # the line inverts segment and step
    segment, step = (magnitude_bits >> 4) & 7, magnitude_bits & 15
    magnitude = ((2 * step + 33) << segment) - 33  # 14-bit, bias 33
    return (magnitude if code & 0x80 else -magnitude) * 4


def reference_alaw(code: int) -> int:
    """G.711 A-law decoder output for `code`, in 16-bit units."""
    bits = code ^ 0x55  # the line inverts the even bits
    segment, step = (bits >> 4) & 7, bits & 15
    magnitude = 2 * step + 1 if segment == 0 else (2 * step + 33) << (segment - 1)  # 13-bit
    return (magnitude if bits & 0x80 else -magnitude) * 8


def samples(pcm: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xFF, 0), (0x7F, 0), (0xFE, 8), (0x7E, -8), (0x80, 32124), (0x00, -32124), (0xF0, 120), (0xEF, 132)],
)
def test_ulaw_known_values(code, value):
    """μ-law characters decode to G.711's values: 0xFF is zero, 0x80/0x00 the extremes ±32124."""
    assert samples(ulaw_decode(bytes([code]))) == (value,)
    assert reference_ulaw(code) == value


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24), (0xC5, 264), (0xF5, 528)],
)
def test_alaw_known_values(code, value):
    """A-law characters decode to G.711's values: 0xD5/0x55 are ±8, 0xAA/0x2A the extremes ±32256."""
    assert samples(alaw_decode(bytes([code]))) == (value,)
    assert reference_alaw(code) == value


def test_every_ulaw_character_decodes_as_the_recommendation_says():
    """All 256 μ-law characters, in one call, match the table-derived decoder, little-endian."""
    assert samples(ulaw_decode(bytes(range(256)))) == tuple(reference_ulaw(c) for c in range(256))
    assert ulaw_decode(b"\x80") == struct.pack("<h", 32124)


def test_every_alaw_character_decodes_as_the_recommendation_says():
    """All 256 A-law characters, in one call, match the table-derived decoder, little-endian."""
    assert samples(alaw_decode(bytes(range(256)))) == tuple(reference_alaw(c) for c in range(256))
    assert alaw_decode(b"\xaa") == struct.pack("<h", 32256)


def test_encoders_pick_zero_and_the_extremes():
    """Silence encodes to μ-law 0xFF and A-law 0xD5 (the idle patterns); full scale to the end codes."""
    pcm = struct.pack("<3h", 0, 32767, -32768)
    assert ulaw_encode(pcm) == bytes([0xFF, 0x80, 0x00])
    assert alaw_encode(pcm) == bytes([0xD5, 0xAA, 0x2A])


def test_characters_survive_decode_then_encode():
    """Each character's decoded value encodes back to it (μ-law's negative zero becomes 0xFF)."""
    codes = bytes(range(256))
    assert alaw_encode(alaw_decode(codes)) == codes
    expected = bytes(0xFF if c == 0x7F else c for c in range(256))
    assert ulaw_encode(ulaw_decode(codes)) == expected


def _ulaw_half_step(value: int) -> int:
    # μ-law segment s (14-bit magnitudes 0..8031) has steps of 2 << s, i.e. 8 << s in 16 bits
    magnitude = abs(value) // 4 + 33
    segment = max(0, magnitude.bit_length() - 6)
    return 4 << segment


def _alaw_half_step(value: int) -> int:
    # A-law segments 0 and 1 have 16-bit steps of 16, segment s >= 1 steps of 16 << (s - 1)
    segment = max(0, (abs(value) // 8).bit_length() - 5)
    return 8 << max(0, segment - 1)


@pytest.mark.parametrize(
    ("encode", "decode", "half_step", "truncation", "clip"),
    [
        (ulaw_encode, ulaw_decode, _ulaw_half_step, 3, 32124),  # 16 -> 14 bits drops 2 bits
        (alaw_encode, alaw_decode, _alaw_half_step, 7, 32256),  # 16 -> 13 bits drops 3 bits
    ],
)
def test_every_16_bit_sample_round_trips_within_half_a_step(encode, decode, half_step, truncation, clip):
    """Every 16-bit value comes back monotonic and within half a quantizer step of itself."""
    decoded = samples(decode(encode(ALL_SAMPLES)))
    assert len(decoded) == 65536
    previous = -32768
    for x, y in zip(range(-32768, 32768), decoded, strict=True):
        assert y >= previous, (x, y)
        previous = y
        if abs(x) <= clip:
            assert abs(x - y) <= half_step(y) + truncation, (x, y)
        else:
            assert abs(y) == clip


def test_empty_input_is_empty():
    """No samples in, no samples out."""
    assert ulaw_encode(b"") == b"" == alaw_encode(b"") == ulaw_decode(b"") == alaw_decode(b"")
