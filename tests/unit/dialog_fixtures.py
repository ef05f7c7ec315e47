"""Messages shared by the dialog tests: Alice (127.0.0.1:5062) calls Bob
(127.0.0.4:5064) through two record-routing proxies, P1 (127.0.0.2) then P2
(127.0.0.3)."""

from __future__ import annotations

from phpvoip.sip.address import Address
from phpvoip.sip.message import Message, Request, Response, parse

CALL_ID = "call-1@127.0.0.1"
ALICE_CONTACT = "sip:alice@127.0.0.1:5062"
BOB_CONTACT = "sip:bob@127.0.0.4:5064"
P1 = "<sip:127.0.0.2;lr>"
P2 = "<sip:127.0.0.3;lr>"

# The INVITE as Alice sends it.
INVITE_SENT = (
    "INVITE sip:bob@example.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKa1\r\n"
    "Max-Forwards: 70\r\n"
    'From: "Alice" <sip:alice@127.0.0.1>;tag=alice1\r\n'
    "To: <sip:bob@example.test>\r\n"
    f"Call-ID: {CALL_ID}\r\n"
    "CSeq: 1 INVITE\r\n"
    f"Contact: <{ALICE_CONTACT}>\r\n"
    "Content-Length: 0\r\n\r\n"
)

# The same INVITE as Bob receives it, after P1 and P2.
INVITE_RECEIVED = (
    f"INVITE {BOB_CONTACT} SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.3;branch=z9hG4bKp2\r\n"
    "Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKp1\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKa1\r\n"
    "Max-Forwards: 68\r\n"
    f"Record-Route: {P2}\r\n"
    f"Record-Route: {P1}\r\n"
    'From: "Alice" <sip:alice@127.0.0.1>;tag=alice1\r\n'
    "To: <sip:bob@example.test>\r\n"
    f"Call-ID: {CALL_ID}\r\n"
    "CSeq: 1 INVITE\r\n"
    f"Contact: <{ALICE_CONTACT}>\r\n"
    "Content-Length: 0\r\n\r\n"
)


def response_text(
    status: int,
    reason: str,
    tag: str | None = "bob1",
    record_route: tuple[str, ...] = (P2, P1),
    contact: str | None = BOB_CONTACT,
    cseq: str = "1 INVITE",
) -> str:
    """A response to the INVITE as Alice receives it (only her own Via left)."""
    lines = [f"SIP/2.0 {status} {reason}", "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKa1"]
    lines += [f"Record-Route: {route}" for route in record_route]
    lines.append('From: "Alice" <sip:alice@127.0.0.1>;tag=alice1')
    lines.append("To: <sip:bob@example.test>" + (f";tag={tag}" if tag else ""))
    lines += [f"Call-ID: {CALL_ID}", f"CSeq: {cseq}"]
    if contact:
        lines.append(f"Contact: <{contact}>")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines)


def invite_sent() -> Request:
    return parse(INVITE_SENT.encode())  # type: ignore[return-value]


def invite_received() -> Request:
    return parse(INVITE_RECEIVED.encode())  # type: ignore[return-value]


def response(status: int = 200, reason: str = "OK", **kwargs: object) -> Response:
    return parse(response_text(status, reason, **kwargs).encode())  # type: ignore[arg-type,return-value]


def in_dialog_request(
    method: str, seq: int, contact: str | None = None, from_tag: str = "alice1", to_tag: str = "bob1"
) -> Request:
    """A request from Alice inside the dialog, as Bob receives it."""
    lines = [
        f"{method} {BOB_CONTACT} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{method.lower()}{seq}",
        "Max-Forwards: 70",
        f"From: <sip:alice@127.0.0.1>;tag={from_tag}",
        f"To: <sip:bob@example.test>;tag={to_tag}",
        f"Call-ID: {CALL_ID}",
        f"CSeq: {seq} {method}",
    ]
    if contact:
        lines.append(f"Contact: <{contact}>")
    lines += ["Content-Length: 0", "", ""]
    return parse("\r\n".join(lines).encode())  # type: ignore[return-value]


class Recorder:
    """A `send(message, destination)` that keeps what was sent, with the clock time."""

    def __init__(self, clock: object = None) -> None:
        self.clock = clock
        self.sent: list[tuple[Message, Address]] = []
        self.times: list[float] = []

    def __call__(self, message: Message, destination: Address) -> None:
        self.sent.append((message, destination))
        if self.clock is not None:
            self.times.append(self.clock.seconds())  # type: ignore[attr-defined]
