"""Bad input and RFC 4475 conformance (issue 14): the message limits, the answers to
requests that miss headers or name another transport, REGISTER for a domain the
switch does not serve, and Contacts with unknown URI parameters or headers."""

from __future__ import annotations

import pytest

from phpvoip.config import ConfigError, load_text
from phpvoip.engine import Engine
from phpvoip.frontdoor import FrontDoor
from phpvoip.modules.registrar import Registrar, parse_settings
from phpvoip.settings import Section
from phpvoip.sip.address import Address
from phpvoip.sip.errors import ParseError
from phpvoip.sip.limits import DEFAULT_LIMITS, UNLIMITED, MessageLimits
from phpvoip.sip.message import Request, Response, parse
from phpvoip.sip.transport import Drop, Receiver, Reply, response_target
from tests.unit.registrar_fakes import Phone, registrar

SOURCE = Address("udp", "127.0.0.1", 40000)


def request(extra: str = "", body: bytes = b"", method: str = "OPTIONS", vias: int = 1) -> bytes:
    via_lines = "".join(f"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bK{i}\r\n" for i in range(vias))
    return (
        f"{method} sip:switch.example SIP/2.0\r\n{via_lines}"
        "To: <sip:switch.example>\r\nFrom: <sip:a@example.com>;tag=1\r\nCall-ID: c1@example.com\r\n"
        f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def refusal(data: bytes, limits: MessageLimits = DEFAULT_LIMITS) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(data, limits)
    return info.value


# -- limits -----------------------------------------------------------------------------


def test_too_many_header_lines_is_400_naming_the_limit():
    """More header lines than max_headers: 400 whose reason names the limit."""
    data = request("".join(f"X-H{i}: {i}\r\n" for i in range(200)))
    error = refusal(data)
    assert error.status == 400 and "limit 200" in error.reason
    assert isinstance(parse(data, MessageLimits(max_headers=300)), Request)


def test_overlong_header_line_is_400():
    """One line longer than max_header_length: 400; a long head of short lines is fine."""
    error = refusal(request(f"Subject: {'x' * 9000}\r\n"))
    assert error.status == 400 and "longer than 8192" in error.reason
    assert isinstance(parse(request("".join(f"X-H{i}: {'y' * 60}\r\n" for i in range(150)))), Request)


def test_too_many_vias_is_400_counting_comma_lists_too():
    """Via values beyond max_vias, in separate lines or in one comma list: 400."""
    assert isinstance(parse(request(vias=70)), Request)
    assert "too many Via values (71" in refusal(request(vias=71)).reason
    listed = ", ".join(f"SIP/2.0/UDP 10.0.0.{i % 250}" for i in range(80))
    assert refusal(request(f"Via: {listed}\r\n")).reason.startswith("too many Via values (81")


def test_oversized_sdp_is_513_other_bodies_only_bound_by_the_message_size():
    """An SDP body over max_sdp_size is 513; a text body of the same size is not
    the SDP limit's business."""
    body = b"v=0\r\n" + b"a=x\r\n" * 4000
    error = refusal(request("Content-Type: application/sdp\r\n", body, "INVITE"))
    assert error.status == 513 and "SDP body too large" in error.reason
    assert isinstance(parse(request("Content-Type: text/plain\r\n", body, "MESSAGE")), Request)
    assert isinstance(parse(request("Content-Type: application/sdp\r\n", body, "INVITE"), UNLIMITED), Request)


def test_receiver_answers_limit_refusals_and_drops_what_it_cannot_answer():
    """The transport's Receiver answers a limit refusal with its status, back to
    the source; a response over a limit is dropped (never answered)."""
    receiver = Receiver(limits=MessageLimits(max_headers=20))
    decision = receiver.receive(request("".join(f"X-H{i}: {i}\r\n" for i in range(30))), SOURCE)
    assert isinstance(decision, Reply) and decision.response.status == 400
    assert decision.response.reason.startswith("Too many header lines")
    assert response_target(decision.response.top_via, SOURCE) == SOURCE
    crowded = request("".join(f"X-H{i}: {i}\r\n" for i in range(30)))
    response = b"SIP/2.0 200 OK\r\n" + crowded.split(b"\r\n", 1)[1]
    assert isinstance(receiver.receive(response, SOURCE), Drop)


def test_sip_section_takes_the_limit_keys_with_defaults():
    """sip: max_headers, max_header_length, max_vias, max_sdp_size; defaults when absent."""
    assert load_text("sip: {listen: ['udp:127.0.0.1:5060']}\n").sip.limits == DEFAULT_LIMITS
    config = load_text(
        "sip:\n  listen: ['udp:127.0.0.1:5060']\n"
        "  max_headers: 100\n  max_header_length: 4096\n  max_vias: 10\n  max_sdp_size: 8192\n"
    )
    assert config.sip.limits == MessageLimits(100, 4096, 10, 8192)
    with pytest.raises(ConfigError, match="max_vias"):
        load_text("sip:\n  listen: ['udp:127.0.0.1:5060']\n  max_vias: 2\n")


# -- RFC 4475 answers ----------------------------------------------------------------------


INSUF = (
    b"INVITE sip:user@example.com SIP/2.0\r\nCSeq: 193942 INVITE\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKkdj.insuf\r\nContent-Length: 0\r\n\r\n"
)


def test_request_without_call_id_from_to_gets_400_to_its_source():
    """RFC 4475 §3.3.1 insuf: 400 with the Via and CSeq it has, routed to the source."""
    decision = Receiver().receive(INSUF, SOURCE)
    assert isinstance(decision, Reply)
    answer = decision.response
    assert answer.status == 400 and answer.reason == "Missing From, To, Call-ID header"
    assert answer.get("CSeq") == "193942 INVITE" and answer.get("Call-ID") is None
    assert response_target(answer.top_via, SOURCE) == SOURCE


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_request_naming_tcp_or_tls_over_udp_is_answered_to_its_source(transport):
    """RFC 4475 novelsc/bext01: the top Via names TCP or TLS but the request came
    over UDP; the answer goes to the source, not to the Via's host and port."""
    via = f"SIP/2.0/{transport} host9.example.com".encode()
    data = request().replace(b"SIP/2.0/UDP 127.0.0.1:40000", via)
    message = Receiver().receive(data, SOURCE)
    assert isinstance(message, Request)
    assert response_target(message.top_via, SOURCE) == SOURCE


def test_register_for_another_domain_is_403_when_there_is_a_registrar():
    """A REGISTER no registrar takes (another domain) gets 403 Domain Not Served
    when the switch has a registrar, 501 when it has none."""
    sent: list = []

    class Transport:
        def send_response(self, response: Response, source: Address) -> None:
            sent.append(response)

    data = request(method="REGISTER").replace(b"sip:switch.example SIP", b"sip:example.com SIP")
    register = parse(data)
    with_registrar = FrontDoor(
        Transport(), "switch.example", allowed_methods=["REGISTER"], registrar=lambda: True
    )
    without = FrontDoor(Transport(), "switch.example", allowed_methods=["REGISTER"])
    assert (with_registrar.answer(register).status, with_registrar.answer(register).reason) == (
        403, "Domain Not Served")
    assert without.answer(register).status == 501


def test_engine_with_a_registrar_refuses_foreign_domains_with_403():
    """Through the engine: the registrar declines another domain (NotMine), the
    front door answers 403 because a registrar exists."""
    from tests.unit.test_engine import FakeTransport, make_engine

    settings = parse_settings(Section("t.yaml", "modules[0]", {"users": {"1001": {"password": "s"}}}))
    engine, transport, _ = make_engine(Registrar("registrar", settings))
    assert isinstance(engine, Engine) and isinstance(transport, FakeTransport)
    data = request(method="REGISTER").replace(b"sip:switch.example SIP", b"sip:example.com SIP")
    engine.layer.message_received(parse(data), SOURCE)
    finals = [m for m, _ in transport.sent if isinstance(m, Response) and m.status >= 200]
    assert [(r.status, r.reason) for r in finals] == [(403, "Domain Not Served")]


@pytest.mark.parametrize(
    "contact",
    [
        "<sip:+19725552222@gw1.example.net;unknownparam>",  # cparam02
        "<sip:1001@example.com?Route=%3Csip:sip.example.com%3E>",  # regescrt
        "sip:+19725552222@gw1.example.net;unknownparam",  # cparam01: a contact parameter
    ],
)
def test_contacts_with_unknown_uri_parameters_or_headers_register(contact):
    """RFC 4475 §3.3.12-14: an authenticated REGISTER whose Contact has an unknown
    URI parameter or an escaped header is accepted, and the binding keeps the URI."""
    module, _ = registrar()
    response = Phone("1001", "secret1").register(module, [contact])
    assert response.status == 200, response
    [binding] = module.contacts("1001")
    uri = contact.strip("<>") if contact.startswith("<") else contact.split(";", 1)[0]
    assert binding.contact == uri


# -- maddr through the transport ---------------------------------------------------------


class FakeUDPPort:
    """Records what the protocol writes (no socket)."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))


@pytest.mark.parametrize(
    ("maddr", "expected"),
    [("192.0.2.50", ("192.0.2.50", 5070)),  # the switch's own address: followed
     ("127.0.0.7", ("127.0.0.7", 5070)),  # loopback: followed
     ("198.51.100.9", ("203.0.113.1", 5070))],  # anyone else: ignored, received + sent-by port
)
def test_transport_follows_maddr_only_to_its_own_or_loopback_addresses(maddr, expected):
    """SipTransport routes a response by the top Via's maddr only when it names
    one of the switch's own addresses or loopback (§18.2.2 restricted), so a
    forged maddr cannot reflect answers to a third party."""
    from twisted.internet import task

    from phpvoip.transport import SipTransport

    transport = SipTransport(task.Clock())
    protocol = transport.udp_protocol()
    port = FakeUDPPort()
    protocol.transport = port
    protocol.local = Address("udp", "192.0.2.50", 5060)
    transport._udp.append(protocol)
    via = f"SIP/2.0/UDP 192.0.2.1:5070;maddr={maddr}".encode()
    data = request().replace(b"SIP/2.0/UDP 127.0.0.1:40000", via)
    source = Address("udp", "203.0.113.1", 40000)
    message = transport.receiver.receive(data, source)
    assert isinstance(message, Request)
    transport.send_response(message.response(200), source)
    assert [addr for _, addr in port.sent] == [expected]
