"""Stateless §8.2 request checks and the answers to unparseable messages."""

from __future__ import annotations

import pytest

from phpvoip.sip.errors import ParseError
from phpvoip.sip.message import Request, parse
from phpvoip.sip.uas import (
    allow_value,
    check_request,
    error_response,
    reason_phrase,
    request_tag,
    stateless_tag,
)

ALLOWED = ("ACK", "CANCEL", "OPTIONS")


def request(
    method: str = "OPTIONS",
    uri: str = "sip:switch.example",
    extra: str = "",
    to: str = "<sip:switch.example>",
    max_forwards: int = 70,
) -> Request:
    data = (
        f"{method} {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"To: {to}\r\n"
        "From: <sip:alice@example.com>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@pc33.example.com\r\n"
        f"CSeq: 314159 {method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    message = parse(data)
    assert isinstance(message, Request)
    return message


def check(message: Request, **kwargs: object):
    kwargs.setdefault("allowed_methods", ALLOWED)
    return check_request(message, **kwargs)  # type: ignore[arg-type]


# -- check_request ----------------------------------------------------------------


def test_allowed_request_passes():
    """A well-formed request for an allowed method, known scheme, no Require passes."""
    assert check(request()) is None


def test_unknown_method_gets_501_with_allow():
    """§8.2.1/§21.5.2: a method we do not recognise is 501 Not Implemented."""
    answer = check(request("FROBNICATE"))
    assert answer.status == 501
    assert answer.get("Allow") == "ACK, CANCEL, OPTIONS"


def test_known_method_not_allowed_gets_405_with_allow():
    """§8.2.1: a known method the UAS does not support is 405 with an Allow header."""
    answer = check(request("INVITE"))
    assert answer.status == 405
    assert answer.get("Allow") == "ACK, CANCEL, OPTIONS"
    assert answer.cseq.method == "INVITE"


def test_unsupported_uri_scheme_gets_416():
    """§8.2.2.1: a Request-URI scheme we cannot serve is 416."""
    answer = check(request(uri="http://switch.example/"))
    assert answer.status == 416


@pytest.mark.parametrize("uri", ["sip:switch.example", "sips:switch.example", "tel:+15551234"])
def test_known_schemes_pass(uri):
    """sip, sips and tel Request-URIs pass the scheme check."""
    assert check(request(uri=uri)) is None


def test_unknown_require_gets_420_listing_only_unknown_options():
    """§8.2.2.3: 420 whose Unsupported lists the Require options we do not know."""
    answer = check(request(extra="Require: timer, foo\r\nRequire: bar\r\n"), supported=("timer",))
    assert answer.status == 420
    assert answer.get_all("Unsupported") == ["foo", "bar"]


def test_known_require_passes():
    """A Require naming only supported options passes."""
    assert check(request(extra="Require: timer\r\n"), supported=("timer",)) is None


def test_require_on_cancel_is_ignored():
    """§8.2.2.3: Require in a CANCEL MUST be ignored."""
    assert check(request("CANCEL", extra="Require: foo\r\n")) is None


def test_ack_is_never_answered():
    """ACK gets no response whatever it holds (unknown Require, Max-Forwards 0)."""
    ack = request("ACK", extra="Require: foo\r\n", max_forwards=0)
    assert check(ack) is None
    assert check(ack, allowed_methods=("OPTIONS",)) is None


def test_max_forwards_zero_gets_483():
    """§16.3: a request we would have to pass on with Max-Forwards 0 is 483."""
    assert check(request(max_forwards=0)).status == 483


def test_max_forwards_zero_to_ourselves_is_processed():
    """RFC 4475 §3.3.11 zeromf: an endpoint processes it as if Max-Forwards were positive."""
    assert check(request(max_forwards=0), local=True) is None


def test_method_check_precedes_other_checks():
    """An unknown method is 501 even when its URI scheme and Require are also bad."""
    answer = check(request("FOO", uri="http://x/", extra="Require: foo\r\n", max_forwards=0))
    assert answer.status == 501


def test_response_copies_the_identifying_headers_and_adds_a_to_tag():
    """§8.2.6.2: Via, From, Call-ID, CSeq copied; To gets a tag."""
    message = request("INVITE")
    answer = check(message)
    assert answer.via == message.via
    assert answer.from_ == message.from_
    assert answer.call_id == message.call_id
    assert answer.cseq == message.cseq
    assert answer.to.uri == message.to.uri
    assert answer.to.tag


def test_existing_to_tag_is_kept():
    """A request with a To tag gets that tag back, not a new one."""
    answer = check(request("INVITE", to="<sip:switch.example>;tag=abc"))
    assert answer.to.tag == "abc"


def test_stateless_tag_is_stable_for_a_retransmission():
    """§8.2.7: the same request (a retransmission) gets the same To tag."""
    first = check(request("INVITE"))
    second = check(request("INVITE"))
    assert first.to.tag == second.to.tag == request_tag(request("INVITE"))


def test_stateless_tag_differs_between_requests():
    """Different requests get different tags."""
    assert stateless_tag("a", "b") != stateless_tag("a", "c")
    assert request_tag(request("INVITE")) != request_tag(request("OPTIONS"))


def test_allow_value_orders_methods_conventionally():
    """Allow lists known methods in the usual order, extensions after."""
    assert allow_value(["OPTIONS", "XYZ", "INVITE", "ACK"]) == "INVITE, ACK, OPTIONS, XYZ"


# -- error_response -----------------------------------------------------------------

GOOD_HEAD = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw\r\n"
    "To: <sip:switch.example>\r\n"
    "From: <sip:alice@example.com>;tag=77\r\n"
    "Call-ID: bad.1@example.com\r\n"
    "CSeq: 8 INVITE\r\n"
    "Max-Forwards: 70\r\n"
)


def fail(data: bytes) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(data)
    return info.value


def answer_to(data: bytes):
    return error_response(fail(data), data)


def test_badinv01_bad_via_is_answered_400_with_the_via_echoed():
    """RFC 4475 §3.1.2.1-like: a broken Via still gets 400, that Via echoed, reason given."""
    data = (
        b"INVITE sip:user@switch.example SIP/2.0\r\n"
        b"To: sip:j.user@switch.example\r\n"
        b"From: sip:caller@example.net;tag=134161461246\r\n"
        b"Max-Forwards: 7\r\n"
        b"Call-ID: badinv01.0ha0isndaksdjasdf3234nas\r\n"
        b"CSeq: 8 INVITE\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.15;;,;,,\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    answer = answer_to(data)
    assert answer is not None and answer.status == 400
    assert answer.reason.startswith("Bad Via header")
    assert answer.get("Via").startswith("SIP/2.0/UDP 192.0.2.15")
    assert answer.get("Call-ID") == "badinv01.0ha0isndaksdjasdf3234nas"
    assert answer.get("CSeq") == "8 INVITE"
    assert answer.to.tag


@pytest.mark.parametrize(
    "broken",
    [
        "Content-Length: 12\r\n",  # body shorter than Content-Length
        "Max-Forwards: seventy\r\n",
        "Contact: <sip:a@b\r\n",
        "Expires: 1\r\nthis line has no colon\r\n",
    ],
)
def test_readable_malformed_requests_get_400_with_a_reason(broken):
    """Any fault past a readable Via/From/To/Call-ID/CSeq is answered 400 saying why."""
    data = f"INVITE sip:u@switch.example SIP/2.0\r\n{broken}{GOOD_HEAD}\r\n".encode()
    error = fail(data)
    answer = error_response(error, data)
    assert answer is not None and answer.status == 400
    assert answer.reason == reason_phrase(error.reason)
    assert answer.via[0].branch == "z9hG4bKkdjuw"
    assert answer.cseq.seq == 8


def test_bad_cseq_is_echoed_as_received():
    """A broken CSeq is copied verbatim: the client may still match it."""
    data = GOOD_HEAD.replace("CSeq: 8 INVITE", "CSeq: eight INVITE")
    data = f"INVITE sip:u@switch.example SIP/2.0\r\n{data}\r\n".encode()
    answer = answer_to(data)
    assert answer.status == 400
    assert answer.get("CSeq") == "eight INVITE"


def test_unparseable_to_is_copied_without_a_tag():
    """A To we cannot parse is echoed as received rather than tagged blindly."""
    data = GOOD_HEAD.replace("To: <sip:switch.example>", "To: <sip:switch.example")
    data = f"INVITE sip:u@switch.example SIP/2.0\r\n{data}\r\n".encode()
    answer = answer_to(data)
    assert answer.status == 400
    assert answer.get("To") == "<sip:switch.example"


@pytest.mark.parametrize("missing", ["Via", "CSeq"])
def test_malformed_request_missing_via_or_cseq_is_dropped(missing):
    """Without a Via (where to) or a CSeq (what it answers, §17.1.3) there is
    nothing to answer."""
    lines = [line for line in GOOD_HEAD.split("\r\n") if line and not line.startswith(missing + ":")]
    head = "".join(line + "\r\n" for line in lines)
    data = f"INVITE sip:u@switch.example SIP/2.0\r\n{head}Content-Length: 99\r\n\r\n".encode()
    assert answer_to(data) is None


@pytest.mark.parametrize("missing", [("To",), ("From",), ("Call-ID",), ("Call-ID", "From", "To")])
def test_request_missing_from_to_or_call_id_still_gets_400(missing):
    """RFC 4475 §3.3.1 (insuf): a request without Call-ID, From or To gets a 400
    that echoes what it has (Via, CSeq and the rest of the five)."""
    lines = [line for line in GOOD_HEAD.split("\r\n") if line and line.split(":", 1)[0] not in missing]
    head = "".join(line + "\r\n" for line in lines)
    data = f"INVITE sip:u@switch.example SIP/2.0\r\n{head}Content-Length: 0\r\n\r\n".encode()
    answer = answer_to(data)
    assert answer is not None and answer.status == 400
    assert answer.reason.startswith("Missing ")
    assert answer.get("CSeq") and answer.get_all("Via")
    for name in missing:
        assert answer.get(name) is None


def test_malformed_response_is_never_answered():
    """A broken response gets no response."""
    data = f"SIP/2.0 200 OK\r\n{GOOD_HEAD}Content-Length: 99\r\n\r\n".encode()
    assert answer_to(data) is None


def test_malformed_ack_is_never_answered():
    """A broken ACK gets no response either."""
    head = GOOD_HEAD.replace("INVITE", "ACK")
    data = f"ACK sip:u@switch.example SIP/2.0\r\n{head}Content-Length: 99\r\n\r\n"
    assert answer_to(data.encode()) is None


def test_garbage_is_dropped():
    """Bytes with no start line and headers are dropped."""
    assert answer_to(b"\x00\x01\x02 hello") is None


def test_bad_request_line_with_readable_headers_is_answered():
    """RFC 4475 §3.1.2.9-like: a broken Request-Line is answered when the headers read."""
    data = f"INVITE sip:u@switch.example; lr SIP/2.0\r\n{GOOD_HEAD}Content-Length: 0\r\n\r\n".encode()
    answer = answer_to(data)
    assert answer is not None and answer.status == 400


def test_unknown_sip_version_is_505():
    """RFC 4475 §3.1.2.16 (badvers): SIP/7.0 is answered 505."""
    data = f"OPTIONS sip:u@switch.example SIP/7.0\r\n{GOOD_HEAD}Content-Length: 0\r\n\r\n".encode()
    answer = answer_to(data)
    assert answer is not None and answer.status == 505


def test_too_large_error_is_513():
    """A 513 ParseError made by the transport becomes a 513 answer."""
    data = f"INVITE sip:u@switch.example SIP/2.0\r\n{GOOD_HEAD}Content-Length: 0\r\n\r\n".encode()
    answer = error_response(ParseError("message too large (limit 10 octets)", 513), data)
    assert answer.status == 513
    assert answer.reason == "Message too large (limit 10 octets)"


def test_error_without_data_uses_the_parsers_raw_headers():
    """Without the bytes, the headers the parser read before the fault are used."""
    data = f"INVITE sip:u@switch.example SIP/2.0\r\n{GOOD_HEAD}Content-Length: 99\r\n\r\n".encode()
    answer = error_response(fail(data))
    assert answer is not None and answer.status == 400


def test_error_answer_tag_is_stable():
    """The same malformed request twice gets the same To tag (§8.2.7)."""
    data = f"INVITE sip:u@switch.example SIP/2.0\r\n{GOOD_HEAD}Content-Length: 99\r\n\r\n".encode()
    assert answer_to(data).to.tag == answer_to(data).to.tag


def test_reason_phrase_is_one_printable_line():
    """Control characters and non-ASCII become spaces, the first letter is capital, length capped."""
    assert reason_phrase("bad\r\nthing\x00é") == "Bad thing"
    assert len(reason_phrase("x" * 500)) == 120
    assert reason_phrase("\r\n") == "Bad Request"


def test_error_answer_serializes_and_parses_back():
    """The 400 built from raw lines is a well-formed message on the wire."""
    data = f"INVITE sip:u@switch.example SIP/2.0\r\n{GOOD_HEAD}Content-Length: 99\r\n\r\n".encode()
    wire = bytes(answer_to(data))
    again = parse(wire)
    assert again.status == 400
    assert again.call_id == "bad.1@example.com"
