"""The stateless front door answers through a fake transport that records sends."""

from __future__ import annotations

from phpvoip.frontdoor import FrontDoor
from phpvoip.sip.address import Address
from phpvoip.sip.message import Request, Response, parse

SOURCE = Address("udp", "192.0.2.1", 5060)


class RecordingTransport:
    """Stands in for SipTransport: keeps what the front door sends."""

    def __init__(self, local: list[Address] | None = None) -> None:
        self.sent: list[tuple[Response, Address]] = []
        self.local = local or []

    def send_response(self, response: Response, source: Address) -> None:
        self.sent.append((response, source))

    def local_addresses(self) -> list[Address]:
        return self.local


def make(**kwargs) -> tuple[FrontDoor, RecordingTransport]:
    transport = RecordingTransport(kwargs.pop("local", None))
    door = FrontDoor(transport, "switch.example", ["127.0.0.1"], **kwargs)
    return door, transport


def request(
    method: str = "OPTIONS",
    uri: str = "sip:switch.example",
    extra: str = "",
    to: str = "<sip:switch.example>",
    max_forwards: int = 70,
) -> Request:
    message = parse(
        (
            f"{method} {uri} SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;rport=5060;received=192.0.2.1\r\n"
            f"Max-Forwards: {max_forwards}\r\n"
            f"To: {to}\r\n"
            "From: <sip:alice@example.com>;tag=1928301774\r\n"
            "Call-ID: fd.1@example.com\r\n"
            f"CSeq: 63104 {method}\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(message, Request)
    return message


def only_answer(door: FrontDoor, transport: RecordingTransport, message) -> Response:
    door.message_received(message, SOURCE)
    assert len(transport.sent) == 1, transport.sent
    response, source = transport.sent[0]
    assert source == SOURCE
    return response


def test_options_to_the_switch_gets_200_with_capabilities():
    """§11.2: 200 to OPTIONS with Allow, Accept, Accept-Encoding, Accept-Language, Supported."""
    door, transport = make(supported=("path",))
    answer = only_answer(door, transport, request())
    assert answer.status == 200
    assert answer.get("Allow") == "ACK, CANCEL, OPTIONS"
    assert answer.get("Accept") == "application/sdp"
    assert answer.get("Accept-Encoding") == "identity"
    assert answer.get("Accept-Language") == "en"
    assert answer.get("Supported") == "path"
    assert answer.to.tag
    assert answer.cseq.seq == 63104 and answer.cseq.method == "OPTIONS"
    assert answer.call_id == "fd.1@example.com"
    assert answer.via[0].branch == "z9hG4bKnashds8"


def test_options_to_a_user_at_one_of_our_addresses_gets_200():
    """An OPTIONS whose Request-URI host is one of the switch's addresses is ours."""
    door, transport = make()
    assert only_answer(door, transport, request(uri="sip:1001@127.0.0.1:5060")).status == 200


def test_options_to_a_listening_address_of_the_transport_gets_200():
    """The transport's local addresses count as the switch's own."""
    door, transport = make(local=[Address("udp", "10.9.8.7", 5060)])
    assert only_answer(door, transport, request(uri="sip:10.9.8.7")).status == 200


def test_options_for_someone_else_gets_404():
    """§8.2.2.1: a Request-URI we do not serve is 404; the front door relays nothing."""
    door, transport = make()
    assert only_answer(door, transport, request(uri="sip:bob@elsewhere.example")).status == 404


def test_zero_max_forwards_options_to_us_is_answered_200():
    """RFC 4475 §3.3.11 zeromf: the endpoint answers as if Max-Forwards were positive."""
    door, transport = make()
    assert only_answer(door, transport, request(max_forwards=0)).status == 200


def test_zero_max_forwards_options_for_elsewhere_gets_483():
    """§16.3: Max-Forwards 0 on a request we would have to pass on is 483."""
    door, transport = make()
    message = request(uri="sip:bob@elsewhere.example", max_forwards=0)
    assert only_answer(door, transport, message).status == 483


def test_unknown_method_gets_501():
    """A method we do not recognise is 501."""
    door, transport = make()
    assert only_answer(door, transport, request("FROB")).status == 501


def test_known_methods_not_served_get_405_with_allow():
    """INVITE, REGISTER, BYE ... before the engine exists: 405 with Allow (§8.2.1)."""
    for method in ("INVITE", "REGISTER", "SUBSCRIBE", "MESSAGE"):
        door, transport = make()
        answer = only_answer(door, transport, request(method))
        assert answer.status == 405, method
        assert answer.get("Allow") == "ACK, CANCEL, OPTIONS"


def test_unsupported_uri_scheme_gets_416():
    """§8.2.2.1: an unsupported Request-URI scheme is 416."""
    door, transport = make()
    assert only_answer(door, transport, request(uri="im:alice@switch.example")).status == 416


def test_unknown_require_gets_420_with_unsupported():
    """§8.2.2.3: 420 listing the unknown options in Unsupported."""
    door, transport = make(supported=("path",))
    answer = only_answer(door, transport, request(extra="Require: path, 100rel\r\n"))
    assert answer.status == 420
    assert answer.get("Unsupported") == "100rel"


def test_cancel_gets_481():
    """§9.2: a CANCEL matching no transaction is 481; stateless, none ever matches."""
    door, transport = make()
    answer = only_answer(door, transport, request("CANCEL"))
    assert answer.status == 481
    assert answer.to.tag


def test_in_dialog_request_gets_481():
    """§12.2.2: a request with a To tag for a dialog we do not have is 481."""
    door, transport = make()
    answer = only_answer(door, transport, request(to="<sip:switch.example>;tag=xyz"))
    assert answer.status == 481
    assert answer.to.tag == "xyz"


def test_responses_are_dropped():
    """A response arriving at the front door answers nothing we sent: no send."""
    door, transport = make()
    door.message_received(request().response(200, None, "t"), SOURCE)
    assert transport.sent == []


def test_ack_is_never_answered():
    """ACK gets no response, even one the checks would refuse."""
    door, transport = make()
    door.message_received(request("ACK", extra="Require: foo\r\n", max_forwards=0), SOURCE)
    door.message_received(request("ACK", uri="im:x@y"), SOURCE)
    assert transport.sent == []


def test_retransmission_gets_the_same_answer():
    """Stateless (§8.2.7): the same request again gets an identical response."""
    door, transport = make()
    door.message_received(request(), SOURCE)
    door.message_received(request(), SOURCE)
    first, second = (bytes(r) for r, _ in transport.sent)
    assert first == second


def test_transport_error_is_noted_without_sending():
    """A transport error is logged only: the front door keeps no state to fail."""
    door, transport = make()
    door.transport_error(Address("udp", "192.0.2.9", 5060))
    assert transport.sent == []


def test_configured_methods_appear_in_allow():
    """allowed_methods decide the Allow header and the 405 set."""
    door, transport = make(allowed_methods=("OPTIONS", "ACK", "CANCEL", "INFO"))
    answer = only_answer(door, transport, request())
    assert answer.get("Allow") == "ACK, CANCEL, OPTIONS, INFO"
