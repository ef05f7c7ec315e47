"""Transport rules without sockets: stream framing (§18.3), Via stamping (§18.2.1,
RFC 3581) and where responses go (§18.2.2)."""

from __future__ import annotations

import pytest

from phpvoip.sip.address import Address
from phpvoip.sip.headers import parse_via_list
from phpvoip.sip.transport import (
    BAD_LENGTH,
    GARBAGE,
    MESSAGE,
    NO_LENGTH,
    PING,
    TOO_LARGE,
    StreamFramer,
    maddr_allowed,
    response_target,
    stamp_via,
)


def msg(body: bytes = b"", length: int | None = None, name: str = "Content-Length") -> bytes:
    length = len(body) if length is None else length
    return (
        b"OPTIONS sip:switch.example SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKx\r\n"
        + f"{name}: {length}\r\n\r\n".encode()
        + body
    )


# -- StreamFramer -------------------------------------------------------------------


def test_two_messages_in_one_segment():
    """Two messages arriving together come out as two frames."""
    framer = StreamFramer()
    one, two = msg(b"hello"), msg(b"world!")
    assert framer.feed(one + two) == [(MESSAGE, one), (MESSAGE, two)]


def test_message_split_byte_by_byte():
    """A message cut into one-octet segments comes out once, whole."""
    framer = StreamFramer()
    whole = msg(b"v=0\r\n")
    frames = []
    for i in range(len(whole)):
        frames += framer.feed(whole[i : i + 1])
    assert frames == [(MESSAGE, whole)]


def test_body_split_across_segments():
    """Headers in one segment, the body in two: one frame when the body is complete."""
    framer = StreamFramer()
    whole = msg(b"0123456789")
    head_end = whole.index(b"\r\n\r\n") + 4
    assert framer.feed(whole[:head_end]) == []
    assert framer.state == StreamFramer.BODY
    assert framer.feed(whole[head_end : head_end + 4]) == []
    assert framer.feed(whole[head_end + 4 :]) == [(MESSAGE, whole)]


def test_compact_content_length_frames():
    """The compact form ``l:`` frames like Content-Length."""
    framer = StreamFramer()
    whole = msg(b"abc", name="l")
    assert framer.feed(whole) == [(MESSAGE, whole)]


def test_missing_content_length_kills_the_stream():
    """§18.3: no Content-Length on a stream is fatal; nothing after it is framed."""
    framer = StreamFramer()
    head = b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n"
    assert framer.feed(head + msg()) == [(NO_LENGTH, head)]
    assert framer.state == StreamFramer.DEAD
    assert framer.feed(msg()) == []


@pytest.mark.parametrize("value", [b"12x", b"-1", b"99999999999"])
def test_unreadable_content_length_kills_the_stream(value):
    """A Content-Length we cannot trust for framing is fatal too."""
    framer = StreamFramer()
    head = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: " + value + b"\r\n\r\n"
    assert framer.feed(head) == [(BAD_LENGTH, head)]


def test_conflicting_content_lengths_kill_the_stream():
    """Two different Content-Length values cannot both frame the message."""
    framer = StreamFramer()
    head = b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\n"
    assert framer.feed(head) == [(BAD_LENGTH, head)]


def test_oversized_message_is_reported_and_its_body_skipped():
    """Over the limit: its headers are reported, its body skipped, the next message framed."""
    framer = StreamFramer(max_size=300)
    big = msg(b"x" * 400)
    small = msg(b"ok")
    head = big[: big.index(b"\r\n\r\n") + 4]
    frames = framer.feed(big[:200])
    frames += framer.feed(big[200:] + small)
    assert frames == [(TOO_LARGE, head), (MESSAGE, small)]


def test_endless_headers_are_garbage():
    """No end of headers within the limit: framing is lost."""
    framer = StreamFramer(max_size=100)
    assert framer.feed(b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 30) == [(GARBAGE, b"")]
    assert framer.state == StreamFramer.DEAD


def test_double_crlf_is_a_ping():
    """RFC 5626 §4.4.1: a double CRLF between messages is a keepalive ping."""
    framer = StreamFramer()
    whole = msg()
    assert framer.feed(b"\r\n\r\n" + whole + b"\r\n\r\n") == [(PING, b""), (MESSAGE, whole), (PING, b"")]


def test_ping_split_in_two_is_still_a_ping():
    """A ping cut after its first CRLF is recognised when the rest arrives."""
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r\n") == [(PING, b"")]


def test_single_crlf_before_a_message_is_skipped():
    """§7.5: a lone CRLF (a pong) before a message is ignored."""
    framer = StreamFramer()
    whole = msg()
    assert framer.feed(b"\r\n" + whole) == [(MESSAGE, whole)]


def test_folded_content_length_frames():
    """A folded Content-Length line (§7.3.1) is unfolded before reading."""
    framer = StreamFramer()
    whole = b"OPTIONS sip:x SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nab"
    assert framer.feed(whole) == [(MESSAGE, whole)]


# -- stamp_via --------------------------------------------------------------------------


def via(text: str):
    return parse_via_list(text)[0]


def test_received_added_when_source_differs():
    """§18.2.1: a sent-by IP other than the source gets received=source."""
    v = via("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa")
    stamp_via(v, "198.51.100.7", 40000)
    assert v.received == "198.51.100.7"
    assert "rport" not in v.params


def test_received_added_for_a_host_name():
    """§18.2.1: a domain name in sent-by always gets received."""
    v = via("SIP/2.0/UDP pc33.example.com;branch=z9hG4bKa")
    stamp_via(v, "192.0.2.1", 5060)
    assert v.received == "192.0.2.1"


def test_nothing_added_when_source_matches():
    """The same IP as sent-by and no rport: the Via is left alone."""
    v = via("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bKa")
    stamp_via(v, "192.0.2.1", 5070)
    assert v.params == {"branch": "z9hG4bKa"}


def test_empty_rport_is_filled_and_received_always_added():
    """RFC 3581 §4: rport gets the source port, and received is added even if equal."""
    v = via("SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKa")
    stamp_via(v, "192.0.2.1", 61000)
    assert v.rport == 61000
    assert v.received == "192.0.2.1"
    assert str(v) == "SIP/2.0/UDP 192.0.2.1:5060;rport=61000;branch=z9hG4bKa;received=192.0.2.1"


def test_ipv6_sent_by_matching_the_source_needs_no_received():
    """IPv6 sent-by is compared as an address, brackets and spelling aside."""
    v = via("SIP/2.0/UDP [2001:db8:0::1]:5060;branch=z9hG4bKa")
    stamp_via(v, "2001:db8::1", 5060)
    assert v.received is None


# -- response_target ------------------------------------------------------------------------

UDP_SOURCE = Address("udp", "198.51.100.7", 40000)
TCP_SOURCE = Address("tcp", "198.51.100.7", 40001)


@pytest.mark.parametrize(
    ("text", "source", "expected"),
    [
        # §18.2.2 maddr → there, sent-by port, but only for loopback (or our own
        # addresses): elsewhere it is ignored, so it cannot aim answers at a third party
        ("SIP/2.0/UDP 192.0.2.1:5070;maddr=127.0.0.9;received=198.51.100.7", UDP_SOURCE,
         Address("udp", "127.0.0.9", 5070)),
        ("SIP/2.0/UDP 192.0.2.1:5070;maddr=[::1];received=198.51.100.7", UDP_SOURCE,
         Address("udp", "::1", 5070)),
        ("SIP/2.0/UDP 192.0.2.1:5070;maddr=203.0.113.9;received=198.51.100.7", UDP_SOURCE,
         Address("udp", "198.51.100.7", 5070)),
        ("SIP/2.0/UDP 192.0.2.1:5070;maddr=203.0.113.9;rport=40000;received=198.51.100.7", UDP_SOURCE,
         UDP_SOURCE),
        # a Via naming TCP or TLS on a request that came over UDP (RFC 4475 novelsc,
        # bext01): the sent-by is no UDP listener, the source is
        ("SIP/2.0/TCP 192.0.2.1:5070;received=198.51.100.7", UDP_SOURCE, UDP_SOURCE),
        ("SIP/2.0/TLS host9.example.com;received=198.51.100.7", UDP_SOURCE, UDP_SOURCE),
        # RFC 3581 received + rport → there
        ("SIP/2.0/UDP 192.0.2.1:5070;rport=40000;received=198.51.100.7", UDP_SOURCE, UDP_SOURCE),
        # received without rport → received, sent-by port
        ("SIP/2.0/UDP 192.0.2.1:5070;received=198.51.100.7", UDP_SOURCE,
         Address("udp", "198.51.100.7", 5070)),
        # neither → sent-by, default port 5060
        ("SIP/2.0/UDP 192.0.2.1", UDP_SOURCE, Address("udp", "192.0.2.1", 5060)),
        # a name with nothing else usable → the source
        ("SIP/2.0/UDP pc.example.com", UDP_SOURCE, UDP_SOURCE),
        # TCP whose connection is gone → received, sent-by port (not rport)
        ("SIP/2.0/TCP 192.0.2.1:5070;rport=40001;received=198.51.100.7", TCP_SOURCE,
         Address("tcp", "198.51.100.7", 5070)),
        ("SIP/2.0/TCP 192.0.2.1", TCP_SOURCE, Address("tcp", "192.0.2.1", 5060)),
    ],
)
def test_response_target(text, source, expected):
    """Responses go where §18.2.2 and RFC 3581 §4 say."""
    assert response_target(via(text), source) == expected


def test_maddr_is_followed_to_our_own_address_only():
    """RFC 3261 §18.2.2 maddr is honoured for the switch's own addresses (and
    loopback), never for any other host (no reflection through a forged Via)."""
    text = "SIP/2.0/UDP 192.0.2.1:5070;maddr=203.0.113.9;received=198.51.100.7"
    assert response_target(via(text), UDP_SOURCE, ["203.0.113.9"]) == Address("udp", "203.0.113.9", 5070)
    assert response_target(via(text), UDP_SOURCE, ["203.0.113.10"]) == Address("udp", "198.51.100.7", 5070)
    assert maddr_allowed("127.0.0.1") and maddr_allowed("[::1]")
    assert maddr_allowed("2001:db8::1", ["[2001:db8:0::1]"])
    assert not maddr_allowed("224.0.1.75") and not maddr_allowed("sip.example.com", ["sip.example.com"])


def test_response_target_without_a_readable_via_is_the_source():
    """A response whose Via could not be read goes back to whoever sent the request."""
    assert response_target(None, UDP_SOURCE) == UDP_SOURCE
