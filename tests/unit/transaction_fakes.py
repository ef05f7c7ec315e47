"""Small named fakes for the transaction tests: a wire that records, a user that
records, and builders of the requests and responses the tests exchange."""

from __future__ import annotations

from twisted.internet.task import Clock

from phpvoip.sip.address import Address
from phpvoip.sip.message import Request, Response, parse
from phpvoip.sip.timers import Timers
from phpvoip.sip.transaction import ServerTransaction, TransactionLayer

UDP_PEER = Address("udp", "127.0.0.1", 5070)
TCP_PEER = Address("tcp", "127.0.0.1", 5070)


def advance(clock: Clock, amount: float) -> None:
    """Like `Clock.advance`, but every call runs at its own instant, so what it
    sends is stamped with the right time (`Clock.advance` runs them all at the end)."""
    end = clock.seconds() + amount
    while True:
        calls = clock.getDelayedCalls()
        due = min((c.getTime() for c in calls), default=None)
        if due is None or due > end:
            break
        clock.advance(max(0.0, due - clock.seconds()))
    clock.advance(max(0.0, end - clock.seconds()))


class Wire:
    """The transport as the layer sees it: remembers what was sent, and when."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.sent: list[tuple[float, Request | Response, Address]] = []

    def __call__(self, message: Request | Response, address: Address) -> None:
        self.sent.append((self.clock.seconds(), message, address))

    def times(self, what: str | int | None = None) -> list[float]:
        """Instants at which messages were sent: all, or one method, or one status."""
        return [t for t, m, _ in self.sent if _is(m, what)]

    def messages(self, what: str | int | None = None) -> list[Request | Response]:
        return [m for _, m, _ in self.sent if _is(m, what)]

    def clear(self) -> None:
        self.sent.clear()


def _is(message: Request | Response, what: str | int | None) -> bool:
    if what is None:
        return True
    if isinstance(what, int):
        return isinstance(message, Response) and message.status == what
    return isinstance(message, Request) and message.method == what


class RecordingUser:
    """A transaction user that writes down every call and answers nothing itself
    unless `answer` is set (called with the request and its transaction)."""

    def __init__(self, answer=None) -> None:
        self.requests: list[tuple[Request, ServerTransaction]] = []
        self.acks: list[tuple[Request, Address]] = []
        self.cancels: list[tuple[Request, ServerTransaction]] = []
        self.strays: list[tuple[Response, Address]] = []
        self.answer = answer
        self.on_cancel = None

    def request_received(self, request: Request, transaction: ServerTransaction) -> None:
        self.requests.append((request, transaction))
        if self.answer is not None:
            self.answer(request, transaction)

    def ack_received(self, ack: Request, source: Address) -> None:
        self.acks.append((ack, source))

    def cancel_received(self, cancel: Request, invite_transaction: ServerTransaction) -> None:
        self.cancels.append((cancel, invite_transaction))
        if self.on_cancel is not None:
            self.on_cancel(cancel, invite_transaction)

    def response_received(self, response: Response, source: Address) -> None:
        self.strays.append((response, source))


class Responses:
    """An `on_response` callback that collects what it gets."""

    def __init__(self) -> None:
        self.got: list[Response] = []

    def __call__(self, response: Response) -> None:
        self.got.append(response)

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.got]


def make_layer(timers: Timers | None = None, user: RecordingUser | None = None):
    """A layer on a fresh Clock with a recording wire and user."""
    clock = Clock()
    wire = Wire(clock)
    user = user if user is not None else RecordingUser()
    layer = TransactionLayer(clock, wire, user, timers if timers is not None else Timers())
    return clock, wire, user, layer


def request(
    method: str = "INVITE",
    branch: str | None = "z9hG4bK-1",
    *,
    transport: str = "UDP",
    sent_by: str = "127.0.0.1:5070",
    uri: str = "sip:bob@127.0.0.1",
    from_tag: str = "f1",
    to_tag: str | None = None,
    call_id: str = "call-1@127.0.0.1",
    cseq: int = 1,
    cseq_method: str | None = None,
    extra: str = "",
) -> Request:
    """A request as a peer at `sent_by` would send it (parsed from text)."""
    params = f";branch={branch}" if branch is not None else ""
    to = "<sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    text = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {sent_by}{params}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:alice@127.0.0.1>;tag={from_tag}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse(text.encode())
    assert isinstance(message, Request)
    return message


def answer(req: Request, status: int, to_tag: str | None = "t1") -> Response:
    """A response to `req` as it would arrive from the wire (reparsed)."""
    message = parse(bytes(req.response(status, to_tag=to_tag if status > 100 else None)))
    assert isinstance(message, Response)
    return message
