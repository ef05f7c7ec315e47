"""The ng client: one cookie per request, retransmission on the clock, errors and stray replies."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from phpvoip.media.bencode import decode, encode
from phpvoip.media.ng import NgClient, NgError, NgTimeout, parse_ng_address

RTPENGINE = ("127.0.0.1", 2223)


class Wire:
    """Stands in for the UDP port: keeps what the client writes."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, datagram: bytes, address: tuple[str, int]) -> None:
        self.sent.append((datagram, address))


def make_client(timeout: float = 1.0, retries: int = 2) -> tuple[NgClient, Clock, Wire]:
    clock, wire = Clock(), Wire()
    client = NgClient(RTPENGINE, clock, timeout, retries)
    client.makeConnection(wire)
    return client, clock, wire


def split(datagram: bytes) -> tuple[bytes, dict]:
    cookie, _, body = datagram.partition(b" ")
    return cookie, decode(body)


def reply(client: NgClient, cookie: bytes, body: dict, source: tuple[str, int] = RTPENGINE) -> None:
    client.datagramReceived(cookie + b" " + encode(body), source)


def outcome(d: defer.Deferred) -> list:
    got: list = []
    d.addBoth(got.append)
    return got


def test_request_is_cookie_space_bencoded_dictionary_and_reply_fires():
    """A ping goes out as `COOKIE d7:command4:pinge` to rtpengine; its pong fires the Deferred."""
    client, clock, wire = make_client()
    got = outcome(client.request({"command": "ping"}))
    [(datagram, address)] = wire.sent
    cookie, body = split(datagram)
    assert address == RTPENGINE
    assert datagram == cookie + b" d7:command4:pinge"
    reply(client, cookie, {"result": "pong"})
    assert got == [{"result": b"pong"}]
    assert client.pending == 0
    assert clock.getDelayedCalls() == []


def test_every_request_has_a_fresh_cookie_and_replies_match_by_cookie():
    """Two requests in flight get different cookies; replies in the other order reach the right one."""
    client, _, wire = make_client()
    first = outcome(client.request({"command": "query", "call-id": "one"}))
    second = outcome(client.request({"command": "query", "call-id": "two"}))
    (cookie1, body1), (cookie2, body2) = (split(d) for d, _ in wire.sent)
    assert cookie1 != cookie2
    assert (body1[b"call-id"], body2[b"call-id"]) == (b"one", b"two")
    reply(client, cookie2, {"result": "ok", "created": 2})
    reply(client, cookie1, {"result": "ok", "created": 1})
    assert first == [{"result": b"ok", "created": 1}]
    assert second == [{"result": b"ok", "created": 2}]


def test_retransmits_with_the_same_cookie_then_times_out():
    """Unanswered: sent again after each timeout, `retries` more times, then NgTimeout."""
    client, clock, wire = make_client(timeout=0.5, retries=2)
    got = outcome(client.request({"command": "ping"}))
    clock.advance(0.49)
    assert len(wire.sent) == 1
    clock.advance(0.01)
    assert len(wire.sent) == 2
    clock.advance(0.5)
    assert len(wire.sent) == 3
    assert got == []
    clock.advance(0.5)
    assert len(wire.sent) == 3
    assert {datagram for datagram, _ in wire.sent} == {wire.sent[0][0]}
    [failure] = got
    assert failure.check(NgTimeout)
    assert "udp:127.0.0.1:2223" in str(failure.value) and "ping" in str(failure.value)
    assert client.pending == 0 and clock.getDelayedCalls() == []


def test_a_reply_to_a_retransmission_fires_once_and_late_duplicates_are_ignored():
    """The answer after a resend completes the request; the same answer again changes nothing."""
    client, clock, wire = make_client()
    got = outcome(client.request({"command": "ping"}))
    clock.advance(1.0)
    cookie, _ = split(wire.sent[-1][0])
    reply(client, cookie, {"result": "pong"})
    reply(client, cookie, {"result": "pong"})
    assert got == [{"result": b"pong"}]
    clock.advance(10)
    assert len(wire.sent) == 2


def test_a_reply_after_the_timeout_is_ignored():
    """Once NgTimeout fired, a late reply with that cookie is dropped."""
    client, clock, wire = make_client(retries=0)
    got = outcome(client.request({"command": "ping"}))
    clock.advance(1.0)
    cookie, _ = split(wire.sent[0][0])
    reply(client, cookie, {"result": "pong"})
    assert len(got) == 1 and got[0].check(NgTimeout)


def test_error_result_fails_with_the_reason():
    """`result: error` becomes NgError carrying rtpengine's error-reason."""
    client, _, wire = make_client()
    got = outcome(client.request({"command": "answer", "call-id": "nope"}))
    cookie, _ = split(wire.sent[0][0])
    reply(client, cookie, {"result": "error", "error-reason": "Unknown call-id"})
    [failure] = got
    assert failure.check(NgError)
    assert failure.value.reason == "Unknown call-id"
    assert failure.value.command == "answer"


def test_stray_and_malformed_replies_are_dropped_and_the_request_retried():
    """A reply from another address, an unknown cookie or garbled bencode do not end the request."""
    client, clock, wire = make_client()
    got = outcome(client.request({"command": "ping"}))
    cookie, _ = split(wire.sent[0][0])
    reply(client, cookie, {"result": "pong"}, source=("127.0.0.1", 9999))
    reply(client, b"other", {"result": "pong"})
    client.datagramReceived(cookie + b" d6:result4:pon", RTPENGINE)
    client.datagramReceived(cookie + b" li1ee", RTPENGINE)
    client.datagramReceived(cookie, RTPENGINE)
    assert got == []
    clock.advance(1.0)
    assert len(wire.sent) == 2
    reply(client, cookie, {"result": "pong"})
    assert got == [{"result": b"pong"}]


def test_cancel_stops_retransmission():
    """A cancelled request is forgotten: no more resends, no timer left."""
    client, clock, wire = make_client()
    d = client.request({"command": "ping"})
    d.addErrback(lambda f: f.trap(defer.CancelledError))
    d.cancel()
    clock.advance(5)
    assert len(wire.sent) == 1 and client.pending == 0 and clock.getDelayedCalls() == []


def test_close_fails_waiting_requests():
    """Closing the client fails what waits with NgTimeout and leaves no timer."""
    client, clock, _ = make_client()
    got = outcome(client.request({"command": "ping"}))
    client.close()
    assert got[0].check(NgTimeout)
    assert clock.getDelayedCalls() == []


def test_request_without_command_fails():
    """A request must name its command."""
    client, _, wire = make_client()
    got = outcome(client.request({"call-id": "x"}))
    assert got[0].check(ValueError) and wire.sent == []


@pytest.mark.parametrize(("text", "address"), [
    ("udp:127.0.0.1:2223", ("127.0.0.1", 2223)),
    ("udp:[::1]:2223", ("::1", 2223)),
])
def test_parse_ng_address(text, address):
    """The config's ng value is udp:HOST:PORT."""
    assert parse_ng_address(text) == address


@pytest.mark.parametrize("text", ["127.0.0.1:2223", "tcp:127.0.0.1:2223", "udp:127.0.0.1", "udp::2223",
                                  "udp:127.0.0.1:0", "udp:127.0.0.1:70000", "udp:127.0.0.1:x"])
def test_parse_ng_address_refuses_others(text):
    """Anything else is a ValueError naming the value."""
    with pytest.raises(ValueError, match="udp:HOST:PORT"):
        parse_ng_address(text)
