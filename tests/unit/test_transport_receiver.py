"""What the sans-IO receiving rules decide about datagrams and stream frames
(RFC 3261 §18, RFC 3581, RFC 5626 §4.4.1): no reactor, no sockets."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phpvoip.sip.address import Address
from phpvoip.sip.errors import LocalProtocolError
from phpvoip.sip.message import Message, Request, Response
from phpvoip.sip.transport import (
    BAD_LENGTH,
    GARBAGE,
    IGNORE,
    MESSAGE,
    NO_LENGTH,
    PING,
    SEND_PONG,
    TOO_LARGE,
    Drop,
    Receiver,
    Reply,
    StreamFramer,
)
from tests.unit.transport_strategies import VALID, assert_well_formed_answer, edits, mutate

SOURCE = Address("udp", "198.51.100.7", 40000)
TCP_SOURCE = Address("tcp", "198.51.100.7", 40001)


def request(body: bytes = b"", *, length: int | None = None, version: str = "SIP/2.0",
            method: str = "OPTIONS", via: str = "192.0.2.1:5060;rport") -> bytes:
    length = len(body) if length is None else length
    return (
        f"{method} sip:switch.example {version}\r\n"
        f"Via: SIP/2.0/UDP {via};branch=z9hG4bKrecv\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:switch.example>\r\n"
        "From: <sip:probe@example.com>;tag=1\r\n"
        "Call-ID: recv@example.com\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode() + body


def head_of(data: bytes) -> bytes:
    return data[: data.index(b"\r\n\r\n") + 4]


RESPONSE = (
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKr\r\n"
    b"To: <sip:a@example.com>;tag=2\r\nFrom: <sip:b@example.com>;tag=1\r\n"
    b"Call-ID: r@example.com\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


# -- datagrams -----------------------------------------------------------------------------


def test_the_sans_io_rules_import_no_twisted():
    """phpvoip.sip.transport loads neither the reactor nor any of twisted.internet."""
    code = (
        "import sys, phpvoip.sip.transport\n"
        "print(sorted(m for m in sys.modules if m.startswith('twisted.internet')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_request_is_delivered_with_received_and_rport():
    """§18.2.1/RFC 3581 §4: a request comes out as itself, its top Via stamped with the source."""
    decision = Receiver().receive(request(), SOURCE)
    assert isinstance(decision, Request)
    assert decision.top_via.received == "198.51.100.7"
    assert decision.top_via.rport == 40000


def test_response_is_delivered_unstamped():
    """A response comes out as itself; its Via is ours and gets nothing added."""
    decision = Receiver().receive(RESPONSE, SOURCE)
    assert isinstance(decision, Response) and decision.status == 200
    assert decision.top_via.received is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\r\n\r\n", SEND_PONG),  # RFC 5626 §4.4.1 ping
        (b"\r\n", IGNORE),  # a pong, or a lone CRLF
        (b"\r\n\r\n\r\n", IGNORE),  # CRLFs only, not a ping
    ],
)
def test_crlf_keepalives(data, expected):
    """A double CRLF gets a pong; any other run of CRLFs is ignored without a log reason."""
    assert Receiver().receive(data, SOURCE) is expected


@pytest.mark.parametrize(
    ("data", "status", "reason"),
    [
        (request(b"abc", length=10), 400, "Content-Length"),  # §18.3 body shorter
        (request(version="SIP/3.0"), 505, ""),
        (request().replace(b"Max-Forwards: 70", b"Max-Forwards: many"), 400, "Max-Forwards"),
    ],
)
def test_unparseable_but_readable_request_gets_a_reply(data, status, reason):
    """Via, From, To, Call-ID and CSeq readable: a Reply with the status and the parser's reason."""
    decision = Receiver().receive(data, SOURCE)
    assert isinstance(decision, Reply) and not decision.close
    assert decision.response.status == status
    assert reason in decision.reason
    assert decision.response.call_id == "recv@example.com"


def test_reply_via_is_stamped_so_it_routes_like_any_response():
    """The Reply's Via gets received/rport of the source, as the request would have."""
    decision = Receiver().receive(request(b"abc", length=10), SOURCE)
    via = decision.response.top_via
    assert (via.received, via.rport) == ("198.51.100.7", 40000)


@pytest.mark.parametrize(
    "data",
    [
        b"garbage",
        b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n",  # no Via, From, To ...
        request(b"abc", length=10, method="ACK"),  # §17.2.1: never answer an ACK
        RESPONSE.replace(b"Content-Length: 0", b"Content-Length: 9"),  # a broken response
    ],
)
def test_unanswerable_bytes_are_dropped_with_a_reason(data):
    """Nothing to answer with (or nothing that may be answered): Drop, with the parse error."""
    decision = Receiver().receive(data, SOURCE)
    assert isinstance(decision, Drop) and not decision.close
    assert decision.reason.startswith("unreadable: ")


def test_oversized_datagram_with_headers_gets_513():
    """Over the limit with readable headers: a 513 Reply naming the limit."""
    decision = Receiver(1500).receive(request(b"x" * 2000), SOURCE)
    assert isinstance(decision, Reply)
    assert decision.response.status == 513
    assert "1500" in decision.reason


def test_oversized_datagram_without_end_of_headers_is_dropped():
    """Over the limit and no end of headers: nothing can be answered."""
    decision = Receiver(1500).receive(b"OPTIONS sip:x SIP/2.0\r\n" + b"X: y\r\n" * 300, SOURCE)
    assert isinstance(decision, Drop) and not decision.close


def test_limit_is_read_at_each_call():
    """Changing max_message_size applies to the next datagram."""
    receiver = Receiver()
    data = request(b"x" * 2000)
    assert isinstance(receiver.receive(data, SOURCE), Request)
    receiver.max_message_size = 1500
    assert receiver.receive(data, SOURCE).response.status == 513


# -- stream frames -----------------------------------------------------------------------------


def test_message_frame_is_decided_like_a_datagram():
    """A framed message is delivered stamped, as over UDP."""
    decision = Receiver().frame(MESSAGE, request(), TCP_SOURCE)
    assert isinstance(decision, Request)
    assert decision.top_via.received == "198.51.100.7"


def test_ping_frame_gets_a_pong():
    """RFC 5626 §4.4.1: a double-CRLF frame is answered with a pong."""
    assert Receiver().frame(PING, b"", TCP_SOURCE) is SEND_PONG


def test_too_large_frame_gets_513_and_keeps_the_connection():
    """The framer skipped the body: answer 513, the stream goes on."""
    decision = Receiver(1500).frame(TOO_LARGE, head_of(request(b"x" * 2000)), TCP_SOURCE)
    assert isinstance(decision, Reply) and not decision.close
    assert decision.response.status == 513


@pytest.mark.parametrize(
    ("kind", "head", "reason"),
    [
        (NO_LENGTH, head_of(request()).replace(b"Content-Length: 0\r\n", b""), "missing Content-Length"),
        (BAD_LENGTH, head_of(request()).replace(b"Content-Length: 0", b"Content-Length: x"),
         "bad Content-Length"),
    ],
)
def test_unframeable_stream_gets_400_then_close(kind, head, reason):
    """§18.3: without a usable Content-Length, answer 400 and close the connection."""
    decision = Receiver().frame(kind, head, TCP_SOURCE)
    assert isinstance(decision, Reply) and decision.close
    assert decision.response.status == 400
    assert reason in decision.reason


def test_unframeable_and_unanswerable_stream_is_closed():
    """No Content-Length and no readable Via: drop, and close."""
    decision = Receiver().frame(NO_LENGTH, b"OPTIONS sip:x SIP/2.0\r\n\r\n", TCP_SOURCE)
    assert isinstance(decision, Drop) and decision.close


def test_garbage_stream_is_closed():
    """No end of headers within the limit: drop, close, and say the limit."""
    decision = Receiver(1500).frame(GARBAGE, b"", TCP_SOURCE)
    assert isinstance(decision, Drop) and decision.close
    assert "1500" in decision.reason


def test_unknown_frame_kind_is_our_bug():
    """A frame kind the framer never yields is a local error naming it, not a drop."""
    with pytest.raises(LocalProtocolError, match="nonsense"):
        Receiver().frame("nonsense", b"", TCP_SOURCE)


def test_stream_of_ping_messages_and_oversize_through_framer_and_receiver():
    """An in-memory stream, cut anywhere, gives: pong, message, 513, message."""
    big = request(b"x" * 2000)
    stream = b"\r\n\r\n" + request(b"one") + big + request(b"two")
    receiver = Receiver(1500)
    framer = StreamFramer(1500)
    decisions = []
    for i in range(0, len(stream), 97):
        for kind, data in framer.feed(stream[i : i + 97]):
            decisions.append(receiver.frame(kind, data, TCP_SOURCE))
    assert decisions[0] is SEND_PONG
    assert decisions[1].body == b"one"
    assert decisions[2].response.status == 513
    assert decisions[3].body == b"two"
    assert len(decisions) == 4


# -- properties ------------------------------------------------------------------------------------


def check_decision(decision) -> None:
    assert isinstance(decision, (Message, Reply, Drop)) or decision in (SEND_PONG, IGNORE), decision
    if isinstance(decision, Reply):
        assert_well_formed_answer(bytes(decision.response))


@settings(max_examples=400, deadline=None)
@given(edits)
def test_mutated_requests_always_get_a_decision(changes):
    """Any mutation of a request is decided without raising; every Reply is well formed."""
    check_decision(Receiver(4000).receive(mutate(VALID, changes), SOURCE))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_octets_always_get_a_decision(data):
    """Random datagrams are decided without raising, whatever they hold."""
    check_decision(Receiver(300).receive(data, SOURCE))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 64), max_size=30), edits)
def test_framer_survives_any_split_of_any_stream(cuts, changes):
    """The stream framer takes any bytes in any segmentation without raising, and
    frames an intact message the same however it is cut; every frame gets a decision."""
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
    receiver = Receiver(4000)
    for kind, data in frames:
        check_decision(receiver.frame(kind, data, TCP_SOURCE))
