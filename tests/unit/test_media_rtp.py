"""RTP packets: a table of bytes and what they mean, and what is refused."""

from __future__ import annotations

import pytest

from phpvoip.media.rtp import RtpPacket, build_rtp, parse_rtp

HEADER = bytes.fromhex("80 00 1234 00000a00 deadbeef".replace(" ", ""))  # v2, PCMU, seq 0x1234, ts 2560


def test_a_plain_packet():
    """Version 2, PCMU, no marker: fields as written, the rest is payload."""
    p = parse_rtp(HEADER + b"\xff" * 160)
    assert (p.version, p.padding, p.extension, p.marker, p.payload_type) == (2, 0, None, False, 0)
    assert (p.sequence, p.timestamp, p.ssrc, p.csrcs) == (0x1234, 2560, 0xDEADBEEF, ())
    assert p.payload == b"\xff" * 160
    assert "seq=4660" in repr(p)


def test_marker_and_payload_type_share_the_second_byte():
    """0xE5 is marker set, payload type 101 (a common telephone-event number)."""
    p = parse_rtp(b"\x80\xe5" + HEADER[2:] + b"\x05\x8a\x00\xa0")
    assert (p.marker, p.payload_type, p.payload) == (True, 101, b"\x05\x8a\x00\xa0")


def test_csrcs_extension_and_padding_are_stripped_from_the_payload():
    """Two CSRCs, a one-word extension and 3 bytes of padding surround a 2-byte payload."""
    data = (
        b"\xb2\x08" + HEADER[2:]  # P, X, CC=2; PCMA
        + bytes.fromhex("0000000100000002")
        + bytes.fromhex("bede0001") + b"\x10\xaa\x00\x00"
        + b"\xd5\xd5" + b"\x00\x00\x03"
    )
    p = parse_rtp(data)
    assert p.csrcs == (1, 2)
    assert p.extension == (0xBEDE, b"\x10\xaa\x00\x00")
    assert p.padding == 3
    assert (p.payload_type, p.payload) == (8, b"\xd5\xd5")


def test_an_empty_payload_is_allowed():
    """A bare header is a packet with no payload (keep-alives are like that)."""
    assert parse_rtp(HEADER).payload == b""


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "shorter than the 12-byte header"),
        (HEADER[:11], "shorter than the 12-byte header"),
        (b"\x40" + HEADER[1:], "version 1"),
        (b"\x00" + HEADER[1:], "version 0"),
        (b"\x81" + HEADER[1:], "CSRC list of 1 runs past"),
        (b"\x8f" + HEADER[1:] + bytes(56), "CSRC list of 15"),
        (b"\x90" + HEADER[1:] + b"\xbe\xde", "extension runs past"),
        (b"\x90" + HEADER[1:] + b"\xbe\xde\x00\x02" + bytes(4), "extension of 2 words"),
        (b"\xa0" + HEADER[1:] + b"\x00", "padding of 0 bytes"),
        (b"\xa0" + HEADER[1:] + b"\x00\x05", "padding of 5 bytes"),
    ],
)
def test_malformed_packets_are_refused(data, reason):
    """Each way a packet can lie about its own length is a ValueError saying which."""
    with pytest.raises(ValueError, match=reason):
        parse_rtp(data)


def test_build_then_parse():
    """What build_rtp writes, parse_rtp reads back, marker included."""
    data = build_rtp(101, 7, 1234567, 0x01020304, b"\x01\x02", marker=True)
    assert data[:2] == b"\x80\xe5"
    p = parse_rtp(data)
    assert (p.payload_type, p.sequence, p.timestamp, p.ssrc, p.marker, p.payload) == (
        101, 7, 1234567, 0x01020304, True, b"\x01\x02")


def test_sequence_and_timestamp_wrap():
    """Counting past 2**16 and 2**32 wraps to the low bits."""
    p = parse_rtp(build_rtp(0, 65536 + 5, 2**32 + 160, 1, b""))
    assert (p.sequence, p.timestamp) == (5, 160)
    p = parse_rtp(build_rtp(0, 65535, 2**32 - 1, 1, b""))
    assert (p.sequence, p.timestamp) == (65535, 2**32 - 1)


@pytest.mark.parametrize("pt", [-1, 128, 200])
def test_payload_types_outside_7_bits_are_refused(pt):
    """The payload type has 7 bits; 200 would set the marker."""
    with pytest.raises(ValueError, match="payload type"):
        build_rtp(pt, 0, 0, 0, b"")


def test_packet_object_holds_no_dict():
    """Packets are many: slotted, no per-instance dict."""
    assert not hasattr(RtpPacket(0, 0, 0, 0, b""), "__dict__")
