"""Bencode, the encoding of rtpengine's ng control protocol.

Four kinds of value: byte strings (``4:spam``), integers (``i42e``), lists
(``l...e``) and dictionaries (``d...e``, keys are byte strings in sorted order).
`encode` also takes `str` (sent as UTF-8) and `bool` (as 0/1) because ng requests
are written with Python strings; `decode` returns bytes for every string, since
only the caller knows which ones are text (an SDP is bytes, a "result" is ASCII).

`decode` is strict: leading zeros, ``-0``, trailing bytes, duplicate keys, keys
that are not strings and truncated input raise ValueError with the offset, so a
garbled datagram from the network never passes as a half-read reply. One rule of
the canonical form is not enforced: rtpengine 10.5 writes dictionary keys in the
order it builds them (``sdp`` before ``result``), not sorted, so key order is
accepted as it comes. `encode` always sorts.
"""

from __future__ import annotations

import itertools

__all__ = ["Value", "decode", "encode"]

Value = bytes | int | list | dict

# Nesting deeper than this is not ng and would only exhaust the stack.
_MAX_DEPTH = 64


def encode(value: object) -> bytes:
    """The bencoding of `value` (bytes, str, int, bool, list/tuple, dict with str or
    bytes keys); TypeError for anything else."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: object, out: list[bytes]) -> None:
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        out.append(b"%d:" % len(data))
        out.append(data)
    elif isinstance(value, str):
        _encode(value.encode("utf-8"), out)
    elif isinstance(value, bool | int):
        out.append(b"i%de" % int(value))
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        items = []
        for key, item in value.items():
            if isinstance(key, str):
                key = key.encode("utf-8")
            elif not isinstance(key, bytes):
                raise TypeError(f"bencode dictionary keys are strings, not {type(key).__name__}")
            items.append((key, item))
        items.sort(key=lambda pair: pair[0])
        for (key, _), (following, _) in itertools.pairwise(items):
            if key == following:
                raise TypeError(f"bencode dictionary key {key!r} given twice")
        out.append(b"d")
        for key, item in items:
            _encode(key, out)
            _encode(item, out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(value).__name__}")


def decode(data: bytes) -> Value:
    """The value `data` encodes, which must be exactly one value; ValueError (with
    the offset) for anything malformed."""
    data = bytes(data)
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise ValueError(f"bencode: {len(data) - end} trailing bytes at offset {end}")
    return value


def _decode(data: bytes, at: int, depth: int) -> tuple[Value, int]:
    if depth > _MAX_DEPTH:
        raise ValueError(f"bencode: nested deeper than {_MAX_DEPTH} at offset {at}")
    if at >= len(data):
        raise ValueError(f"bencode: truncated at offset {at}")
    lead = data[at : at + 1]
    if lead == b"i":
        end = data.find(b"e", at + 1)
        if end < 0:
            raise ValueError(f"bencode: unterminated integer at offset {at}")
        return _integer(data[at + 1 : end], at), end + 1
    if lead == b"l":
        items: list = []
        at += 1
        while data[at : at + 1] != b"e":
            if at >= len(data):
                raise ValueError(f"bencode: unterminated list at offset {at}")
            item, at = _decode(data, at, depth + 1)
            items.append(item)
        return items, at + 1
    if lead == b"d":
        result: dict = {}
        at += 1
        while data[at : at + 1] != b"e":
            if at >= len(data):
                raise ValueError(f"bencode: unterminated dictionary at offset {at}")
            if not data[at : at + 1].isdigit():
                raise ValueError(f"bencode: dictionary key is not a string at offset {at}")
            key, next_at = _string(data, at)
            if key in result:
                raise ValueError(f"bencode: dictionary key {key!r} given twice at offset {at}")
            result[key], at = _decode(data, next_at, depth + 1)
        return result, at + 1
    if lead.isdigit():
        return _string(data, at)
    raise ValueError(f"bencode: unexpected byte {lead!r} at offset {at}")


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    colon = data.find(b":", at)
    if colon < 0:
        raise ValueError(f"bencode: string length without ':' at offset {at}")
    digits = data[at:colon]
    if not digits.isdigit() or (len(digits) > 1 and digits[:1] == b"0"):
        raise ValueError(f"bencode: bad string length {digits[:20]!r} at offset {at}")
    length = int(digits)
    start = colon + 1
    if start + length > len(data):
        raise ValueError(f"bencode: string of {length} bytes truncated at offset {at}")
    return data[start : start + length], start + length


def _integer(digits: bytes, at: int) -> int:
    body = digits[1:] if digits[:1] == b"-" else digits
    # isdigit() on bytes is ASCII-only, so int() never sees other digits.
    if not body.isdigit() or (len(body) > 1 and body[:1] == b"0") or digits == b"-0":
        raise ValueError(f"bencode: bad integer {digits[:20]!r} at offset {at}")
    return int(digits)
