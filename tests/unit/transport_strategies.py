"""Shared by the transport property tests: a valid request, mutations of it, and the
check that an answer to bad input is well formed."""

from __future__ import annotations

import re

from hypothesis import strategies as st

from phpvoip.sip.errors import ParseError
from phpvoip.sip.message import Response, parse

VALID = (
    b"INVITE sip:1001@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKfuzz;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:1001@127.0.0.1>\r\n"
    b"From: \"A\" <sip:a@example.com>;tag=9\r\n"
    b"Call-ID: fuzz@example.com\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Require: foo\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\nv=0\n"
)


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for position, delete, insert in edits:
        position %= len(out) + 1
        out[position : position + delete] = insert
    return bytes(out)


edits = st.lists(
    st.tuples(
        st.integers(0, len(VALID)),
        st.integers(0, 8),
        st.sampled_from([b"", b"\r\n", b";", b",", b":", b" ", b"\x00", b"\xff", b"<", b">", b"\"", b"[",
                         b"SIP/2.0", b"Via: ", b"\r\n\r\n", b"=", b"@", b"%", b"\t"]),
    ),
    max_size=6,
)


STATUS_LINE = re.compile(rb"SIP/2\.0 [1-6][0-9][0-9] [\x20-\x7e]*\Z")
# ... and a 400 to a request without From, To or Call-ID lacks them too (RFC 4475 insuf)
ECHOED = ("bad Via", "bad From", "bad To", "bad Call-ID", "bad CSeq", "missing ")


def assert_well_formed_answer(data: bytes) -> None:
    """A pong, or a response that is well framed: a status line, one header per line,
    a true Content-Length. Its Via/From/To/Call-ID/CSeq may be broken ones echoed
    back as §8.2.6.2 requires; nothing else may be."""
    if data == b"\r\n":
        return
    head, blank, body = data.partition(b"\r\n\r\n")
    assert blank
    lines = head.split(b"\r\n")
    assert STATUS_LINE.match(lines[0]), lines[0]
    for line in lines[1:]:
        assert b":" in line and b"\r" not in line and b"\n" not in line and b"\x00" not in line, line
    assert f"Content-Length: {len(body)}".encode() in lines
    try:
        assert isinstance(parse(data), Response)
    except ParseError as e:
        assert e.reason.startswith(ECHOED), e.reason
