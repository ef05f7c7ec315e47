"""Bad input never raises inside the transport or front door, and every answer to it
is a well-formed response (property tests, no sockets)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.logger import LogLevel, globalLogPublisher

from phpvoip.frontdoor import FrontDoor
from phpvoip.sip.address import Address
from phpvoip.sip.errors import ParseError
from phpvoip.sip.message import Response, parse
from phpvoip.sip.transport import SipTransport, StreamFramer, _DatagramProtocol

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


class FakeUDPPort:
    """Records datagrams written by the protocol."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def make_transport() -> tuple[SipTransport, _DatagramProtocol, FakeUDPPort]:
    transport = SipTransport(task.Clock(), max_message_size=4000)
    transport.sink = FrontDoor(transport, "127.0.0.1")
    protocol = _DatagramProtocol(transport)
    port = FakeUDPPort()
    protocol.transport = port
    protocol.local = Address("udp", "127.0.0.1", 5060)
    transport._udp.append(protocol)
    return transport, protocol, port


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
ECHOED = ("bad Via", "bad From", "bad To", "bad Call-ID", "bad CSeq")


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


def handle(data: bytes) -> list[bytes]:
    transport, protocol, port = make_transport()
    errors: list[dict] = []

    def observe(event: dict) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        protocol.datagramReceived(data, ("192.0.2.1", 5060))
    finally:
        globalLogPublisher.removeObserver(observe)
    assert errors == [], errors
    return [sent for sent, _ in port.sent]


@settings(max_examples=400, deadline=None)
@given(edits)
def test_mutated_requests_never_raise_and_answers_parse(changes):
    """Any mutation of a request is handled without an error log; every answer is well formed."""
    for sent in handle(mutate(VALID, changes)):
        assert_well_formed_answer(sent)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_datagrams_never_raise(data):
    """Random octets are dropped or answered, never an exception."""
    for sent in handle(data):
        assert_well_formed_answer(sent)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 64), max_size=30), edits)
def test_framer_survives_any_split_of_any_stream(cuts, changes):
    """The stream framer takes any bytes in any segmentation without raising, and
    frames an intact message the same however it is cut."""
    stream = mutate(VALID, changes) + VALID
    framer = StreamFramer(4000)
    position = 0
    frames = []
    for size in cuts:
        frames += framer.feed(stream[position : position + size])
        position += size
    frames += framer.feed(stream[position:])
    whole = StreamFramer(4000).feed(stream)
    assert frames == whole
