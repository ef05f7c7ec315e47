"""Bencode for rtpengine's ng protocol: tables of bytes both ways, and strict decoding."""

from __future__ import annotations

import pytest

from phpvoip.media.bencode import decode, encode

# (value, its bencoding): each row must encode to the bytes and decode back.
ROUND_TRIPS = [
    (b"", b"0:"),
    (b"spam", b"4:spam"),
    (b"a b\x00\xff", b"5:a b\x00\xff"),
    (0, b"i0e"),
    (42, b"i42e"),
    (-7, b"i-7e"),
    (2**40, b"i1099511627776e"),
    ([], b"le"),
    ([b"a", 1, [b"b"]], b"l1:ai1el1:bee"),
    ({}, b"de"),
    ({b"command": b"ping"}, b"d7:command4:pinge"),
    ({b"a": {b"b": [0, b""]}}, b"d1:ad1:bli0e0:eee"),
]


@pytest.mark.parametrize(("value", "data"), ROUND_TRIPS)
def test_round_trip(value, data):
    """Each value encodes to its canonical bytes and the bytes decode back to it."""
    assert encode(value) == data
    assert decode(data) == value


def test_encode_takes_python_strings_and_sorts_keys():
    """Requests are written with str and in any key order; the wire has UTF-8 and sorted keys."""
    request = {"sdp": "v=0", "command": "offer", "flags": ["trust-address"], "ICE": "remove", "x": True}
    assert encode(request) == b"d3:ICE6:remove7:command5:offer5:flagsl13:trust-addresse3:sdp3:v=01:xi1ee"
    assert encode("é") == b"2:\xc3\xa9"
    assert encode((1, 2)) == b"li1ei2ee"


@pytest.mark.parametrize("value", [1.5, None, object(), {1: b"x"}, {"a": 1, b"a": 2}])
def test_encode_refuses_what_bencode_cannot_say(value):
    """Floats, None, non-string keys and a key given twice are errors, not guesses."""
    with pytest.raises(TypeError):
        encode(value)


def test_decode_accepts_keys_in_rtpengine_order():
    """rtpengine 10.5 writes "sdp" before "result": unsorted keys are read as they come."""
    assert decode(b"d3:sdp3:v=06:result2:oke") == {b"sdp": b"v=0", b"result": b"ok"}


MALFORMED = [
    b"",  # nothing
    b"i42",  # unterminated integer
    b"ie",  # empty integer
    b"i042e",  # leading zero
    b"i-0e",  # negative zero
    b"i--1e",
    b"i4 2e",
    b"i\xd9\xa1e",  # a non-ASCII digit
    b"5:spam",  # string shorter than its length
    b"05:spams",  # leading zero in a length
    b"-1:x",
    b"4spam",  # no colon
    b"l1:a",  # unterminated list
    b"d1:a",  # dictionary key without value
    b"d1:ai1e",  # unterminated dictionary
    b"di1ei2ee",  # integer key
    b"d1:ai1e1:ai2ee",  # duplicate key
    b"4:spamX",  # trailing byte
    b"i1ei2e",  # two values
    b"x",  # unknown type
    b"l" * 100 + b"e" * 100,  # absurd nesting
]


@pytest.mark.parametrize("data", MALFORMED)
def test_decode_rejects_malformed_input(data):
    """Every malformed input is a ValueError naming the offset, never a half-read value."""
    with pytest.raises(ValueError, match="offset"):
        decode(data)
