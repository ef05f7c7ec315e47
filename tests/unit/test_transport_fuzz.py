"""Bad input never raises inside the transport or front door, and every answer to it
is a well-formed response (property tests through SipTransport, no sockets)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.logger import LogLevel, globalLogPublisher

from phpvoip.frontdoor import FrontDoor
from phpvoip.sip.address import Address
from phpvoip.transport import SipTransport
from tests.unit.transport_strategies import VALID, assert_well_formed_answer, edits, mutate


class FakeUDPPort:
    """Records datagrams written by the protocol."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


def make_transport():
    transport = SipTransport(task.Clock(), max_message_size=4000)
    transport.sink = FrontDoor(transport, "127.0.0.1")
    protocol = transport.udp_protocol()
    port = FakeUDPPort()
    protocol.transport = port
    protocol.local = Address("udp", "127.0.0.1", 5060)
    transport._udp.append(protocol)
    return transport, protocol, port


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
