"""RTP packets (RFC 3550 §5.1): parse what arrives, build what the endpoint sends.

Sans-IO: bytes in, a packet out, and back. The relay forwards without parsing; this
is for the endpoint, which must read payloads (voice, telephone-events).
"""

from __future__ import annotations

import struct

__all__ = ["RtpPacket", "build_rtp", "parse_rtp", "SEQUENCE_MOD", "TIMESTAMP_MOD"]

SEQUENCE_MOD = 1 << 16
TIMESTAMP_MOD = 1 << 32

_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")


class RtpPacket:
    """One RTP packet, header fields by name.

    `padding` is the number of padding bytes that were removed (0 when the P bit is
    clear); `extension` is None or ``(profile, data)`` of the header extension
    (RFC 3550 §5.3.1); `csrcs` a tuple of contributing sources."""

    __slots__ = (
        "version", "padding", "extension", "marker", "payload_type",
        "sequence", "timestamp", "ssrc", "csrcs", "payload",
    )

    def __init__(
        self,
        payload_type: int,
        sequence: int,
        timestamp: int,
        ssrc: int,
        payload: bytes,
        marker: bool = False,
        csrcs: tuple[int, ...] = (),
        extension: tuple[int, bytes] | None = None,
        padding: int = 0,
        version: int = 2,
    ) -> None:
        self.version = version
        self.padding = padding
        self.extension = extension
        self.marker = marker
        self.payload_type = payload_type
        self.sequence = sequence
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = csrcs
        self.payload = payload

    def __repr__(self) -> str:
        return (
            f"<RtpPacket pt={self.payload_type} seq={self.sequence} ts={self.timestamp} "
            f"ssrc={self.ssrc:#010x}{' M' if self.marker else ''} {len(self.payload)}B>"
        )


def parse_rtp(data: bytes) -> RtpPacket:
    """Read one RTP packet; raise ValueError when it is not one (too short, not
    version 2, or CSRC list, extension or padding running past its end)."""
    if len(data) < _HEADER.size:
        raise ValueError(f"RTP packet of {len(data)} bytes is shorter than the 12-byte header")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    version = first >> 6
    if version != 2:
        raise ValueError(f"RTP version {version}, not 2")
    count = first & 0x0F
    offset = _HEADER.size + 4 * count
    if offset > len(data):
        raise ValueError(f"RTP CSRC list of {count} runs past the packet's {len(data)} bytes")
    csrcs = struct.unpack_from(f"!{count}I", data, _HEADER.size) if count else ()
    extension = None
    if first & 0x10:
        if offset + 4 > len(data):
            raise ValueError("RTP header extension runs past the packet")
        profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
        start, offset = offset + 4, offset + 4 + 4 * words
        if offset > len(data):
            raise ValueError(f"RTP header extension of {words} words runs past the packet")
        extension = (profile, bytes(data[start:offset]))
    end = len(data)
    padding = 0
    if first & 0x20:
        # §5.1: "The last octet of the padding contains a count of how many padding
        # octets should be ignored, including itself."
        padding = data[-1]
        if padding == 0 or padding > end - offset:
            raise ValueError(f"RTP padding of {padding} bytes does not fit the packet")
        end -= padding
    return RtpPacket(
        second & 0x7F, sequence, timestamp, ssrc, bytes(data[offset:end]),
        marker=bool(second & 0x80), csrcs=csrcs, extension=extension, padding=padding,
    )


def build_rtp(
    payload_type: int, sequence: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False
) -> bytes:
    """An RTP packet without CSRCs, extension or padding. Sequence and timestamp
    are taken modulo 2**16 and 2**32, so callers may simply count up."""
    if not 0 <= payload_type < 128:
        raise ValueError(f"RTP payload type {payload_type} is outside 0-127")
    header = _HEADER.pack(
        0x80, payload_type | (0x80 if marker else 0),
        sequence % SEQUENCE_MOD, timestamp % TIMESTAMP_MOD, ssrc & 0xFFFFFFFF,
    )
    return header + payload
