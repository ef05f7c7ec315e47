"""The state of one SIP dialog and the messages it builds and checks (RFC 3261 §12,
§13.2.2.4, §13.3.1.4, §14, §15). The public names are re-exported by
`phpvoip.sip.dialog`, which documents the whole.
"""

from __future__ import annotations

import enum
import random as _random
import secrets
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from phpvoip.sip.address import Address
from phpvoip.sip.dialog_reliability import AnswerRetransmitter, AnswerState, Send
from phpvoip.sip.dialog_routing import Hop, request_target, uri_hop
from phpvoip.sip.errors import LocalProtocolError, ProtocolError
from phpvoip.sip.headers import STAR, CSeq, NameAddr, Via
from phpvoip.sip.ids import new_branch, new_tag
from phpvoip.sip.message import Message, Request, Response
from phpvoip.sip.timers import Timers
from phpvoip.sip.uri import URI

__all__ = [
    "MAX_FORWARDS",
    "TARGET_REFRESH",
    "Dialog",
    "DialogError",
    "DialogId",
    "DialogState",
    "Role",
    "dialog_response",
    "error_response",
    "new_branch",
    "new_tag",
]

log = Logger()

MAX_FORWARDS = 70
# Requests that may change the remote target (§12.2: re-INVITE; RFC 3311 UPDATE;
# RFC 6665 §4.1.2.2, §4.2.2.1 SUBSCRIBE and NOTIFY).
TARGET_REFRESH = frozenset(("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY"))
# Requests that carry our Contact: target refreshes, and REFER (RFC 3515 §2.4.1).
_WITH_CONTACT = TARGET_REFRESH | {"REFER"}
# §13.2.2.4: "The ACK MUST contain the same credentials as the INVITE."
_CREDENTIALS = ("Authorization", "Proxy-Authorization")
_MAX_SEQ = 2**31 - 1  # §8.1.1.5: below 2**31
# A terminated dialog's observers: none, and none can be added (when_terminated
# calls them at once), so all share one empty tuple rather than a list each.
_NONE_LEFT: Any = ()


def _initial_seq() -> int:
    # §8.1.1.5 lets the first number be anything below 2**31; a small one leaves
    # room for a lifetime of re-INVITEs and is what most peers expect to see.
    return secrets.randbelow(1 << 15) + 1


class DialogState(enum.Enum):
    """Where a dialog is (§12).

    ::

        EARLY --2xx---------------------------> CONFIRMED
        EARLY --non-2xx final, BYE, terminate--> TERMINATED
        CONFIRMED --BYE, 481/408, terminate----> TERMINATED
    """

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class Role(enum.Enum):
    """Which side of the dialog-creating request we were on."""

    UAC = "uac"
    UAS = "uas"


# The dialog state machine as a table: (state, event) -> next state. Anything not
# listed is an impossible event and raises LocalProtocolError naming both.
_EARLY, _CONFIRMED, _TERMINATED = DialogState.EARLY, DialogState.CONFIRMED, DialogState.TERMINATED
_TRANSITIONS: dict[tuple[DialogState, str], DialogState] = {
    (_EARLY, "2xx"): _CONFIRMED,
    (_EARLY, "failure"): _TERMINATED,
    (_EARLY, "terminate"): _TERMINATED,
    (_CONFIRMED, "2xx"): _CONFIRMED,
    (_CONFIRMED, "terminate"): _TERMINATED,
}


class DialogId(NamedTuple):
    """§12: a dialog is identified by Call-ID, local tag and remote tag. The remote
    tag is None for a peer that sent no From tag (RFC 2543, §12.1.1)."""

    call_id: str
    local_tag: str
    remote_tag: str | None


class DialogError(ProtocolError):
    """A request the dialog refuses, with the status to answer and any header
    lines the answer must carry (Retry-After for §14.2's 500)."""

    def __init__(self, reason: str, status: int, headers: Iterable[tuple[str, Any]] = ()) -> None:
        super().__init__(reason, status)
        self.headers = list(headers)


def error_response(request: Request, error: ProtocolError) -> Response:
    """The answer to a request refused with `error`: its status and reason, plus
    the header lines a `DialogError` carries."""
    response = request.response(error.status, error.reason)
    for name, value in getattr(error, "headers", ()):
        response.add(name, value)
    return response


def dialog_response(
    request: Request,
    status: int,
    local_tag: str,
    contact: NameAddr | URI,
    reason: str | None = None,
) -> Response:
    """A response that creates or confirms a dialog (1xx with a tag, 2xx): the
    §8.2.6.2 copies, our tag on To, our Contact, and every Record-Route of the
    request in order (§12.1.1: "the UAS MUST copy all Record-Route header field
    values from the request into the response ... and MUST maintain the order")."""
    response = request.response(status, reason, to_tag=local_tag)
    record_route = request.record_route
    if record_route:
        response.add("Record-Route", [route.copy() for route in record_route])
    response.add("Contact", contact.copy() if isinstance(contact, NameAddr) else NameAddr(contact.copy()))
    return response


def _contact_uri(message: Message) -> URI | None:
    contacts = message.contact
    if contacts is STAR or not contacts:
        return None
    return contacts[0].uri.copy()


class Dialog:
    """One dialog, from either side (§12). Build it with `Dialog.uac()` from our
    request and the response that made the dialog, or `Dialog.uas()` from the
    request we received and the tagged response we answered it with.

    `local_party` and `remote_party` are the From and To of the requests we send
    (display name and parameters kept as first seen, tags set); `route_set` is in the
    order our requests visit it; `local_seq`/`remote_seq` are None while empty.
    """

    __slots__ = (
        "role",
        "state",
        "call_id",
        "local_tag",
        "remote_tag",
        "local_party",
        "remote_party",
        "remote_target",
        "local_target",
        "route_set",
        "local_seq",
        "remote_seq",
        "secure",
        "_send",
        "_ack",
        "_ack_destination",
        "_answer",
        "_ok_seq",
        "_invite_out",
        "_invite_in",
        "_on_terminated",
    )

    def __init__(
        self,
        role: Role,
        call_id: str,
        local_tag: str,
        remote_tag: str | None,
        local_party: NameAddr,
        remote_party: NameAddr,
        remote_target: URI,
        route_set: list[NameAddr],
        local_seq: int | None = None,
        remote_seq: int | None = None,
        local_target: URI | None = None,
        secure: bool = False,
        state: DialogState = DialogState.EARLY,
        send: Send | None = None,
    ) -> None:
        self.role = role
        self.state = state
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_party = local_party
        self.local_party.tag = local_tag
        self.remote_party = remote_party
        self.remote_party.tag = remote_tag
        self.remote_target = remote_target
        self.local_target = local_target
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure
        self._send = send
        self._ack: Request | None = None
        self._ack_destination: Address | None = None
        self._answer: AnswerRetransmitter | None = None
        self._ok_seq: int | None = None  # CSeq of the last INVITE a 2xx answered
        self._invite_out: int | None = None  # our INVITE still without final response
        self._invite_in: int | None = None  # their INVITE we have not answered finally
        self._on_terminated: list[Callable[[Dialog], object]] = []

    # -- creation ---------------------------------------------------------------

    @classmethod
    def uac(cls, request: Request, response: Response, send: Send | None = None) -> Dialog:
        """The dialog our `request` (an INVITE) gets from a 101-299 `response`
        with a To tag (§12.1.2): early for a 1xx, confirmed for a 2xx. The route
        set is the response's Record-Route reversed; the remote target its Contact."""
        status, tag = response.status, response.to.tag
        if not 101 <= status < 300 or tag is None:
            raise LocalProtocolError(f"{response!r} without a To tag does not create a dialog")
        local_tag = request.from_.tag
        if local_tag is None:
            raise LocalProtocolError(f"{request!r} has no From tag (§8.1.1.3)")
        remote_target = _contact_uri(response)
        if remote_target is None:
            # §12.1.2 requires the Contact; a peer that leaves it out still gets its
            # ACK and BYE, at the Request-URI it was reached by.
            log.warn("{status} for {callID} without Contact", status=status, callID=request.call_id)
            remote_target = request.uri.copy()
        dialog = cls(
            Role.UAC,
            request.call_id,
            local_tag,
            tag,
            request.from_.copy(),
            response.to.copy(),
            remote_target,
            [route.copy() for route in reversed(response.record_route)],
            local_seq=request.cseq.seq,
            local_target=_contact_uri(request),
            secure=request.uri.scheme == "sips",
            state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
            send=send,
        )
        if request.method == "INVITE":
            if status < 200:
                dialog._invite_out = request.cseq.seq
            else:
                dialog._ok_seq = request.cseq.seq
        return dialog

    @classmethod
    def uas(cls, request: Request, response: Response, send: Send | None = None) -> Dialog:
        """The dialog we create by answering `request` with a 101-299 `response`
        that carries our To tag (§12.1.1). The route set is the request's
        Record-Route in order; the remote target its Contact; the remote CSeq its CSeq;
        our local CSeq stays empty until we send a request."""
        status, tag = response.status, response.to.tag
        if not 101 <= status < 300 or tag is None:
            raise LocalProtocolError(f"{response!r} without a To tag does not create a dialog")
        remote_target = _contact_uri(request)
        if remote_target is None:
            log.warn("{method} for {callID} without Contact", method=request.method, callID=request.call_id)
            remote_target = request.from_.uri.copy()
        local_party = request.to.copy()
        dialog = cls(
            Role.UAS,
            request.call_id,
            tag,
            request.from_.tag,
            local_party,
            request.from_.copy(),
            remote_target,
            [route.copy() for route in request.record_route],
            remote_seq=request.cseq.seq,
            local_target=_contact_uri(response),
            secure=request.uri.scheme == "sips",
            state=DialogState.CONFIRMED if status >= 200 else DialogState.EARLY,
            send=send,
        )
        if request.method == "INVITE" and status < 200:
            dialog._invite_in = request.cseq.seq
        return dialog

    # -- identity and state -----------------------------------------------------

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def answer_pending(self) -> bool:
        """Whether a 2xx of ours is still being retransmitted, awaiting its ACK."""
        return self._answer is not None and self._answer.state is AnswerState.RETRANSMITTING

    @property
    def ack(self) -> Request | None:
        """The last ACK we sent for a 2xx, kept to answer that 2xx's retransmissions."""
        return self._ack

    def __repr__(self) -> str:
        ids = f"{self.call_id} {self.local_tag}/{self.remote_tag}"
        return f"<Dialog {self.role.value} {self.state.value} {ids}>"

    def _move(self, event: str) -> None:
        try:
            self.state = _TRANSITIONS[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(f"dialog {self.call_id}: {event} in state {self.state.value}") from None

    def when_terminated(self, callback: Callable[[Dialog], object]) -> None:
        """Call `callback(dialog)` once the dialog terminates (at once if it has)."""
        if self.state is DialogState.TERMINATED:
            callback(self)
        else:
            self._on_terminated.append(callback)

    def terminate(self) -> bool:
        """End the dialog: stop any 2xx retransmission and tell the observers (the
        table forgets it). Returns False if it had already ended, so that the many
        ways a call can end need not be ordered."""
        if self.state is DialogState.TERMINATED:
            return False
        self._end("terminate")
        return True

    def _end(self, event: str) -> None:
        self._move(event)
        if self._answer is not None:
            self._answer.stop()
            self._answer = None
        callbacks, self._on_terminated = self._on_terminated, _NONE_LEFT
        for callback in callbacks:
            callback(self)

    def next_hop(self) -> Hop:
        """Where our requests in this dialog go first (§8.1.2): the first route, which
        is also the Request-URI when it is a strict router; else the remote target."""
        if self.route_set:
            return uri_hop(self.route_set[0].uri)
        return uri_hop(self.remote_target)

    # -- requests we send (§12.2.1.1) -------------------------------------------

    def new_request(
        self,
        method: str,
        via_host: str,
        via_port: int | None,
        transport: str = "UDP",
        body: bytes = b"",
        headers: Iterable[tuple[str, Any]] = (),
    ) -> Request:
        """A request within the dialog: Request-URI and Route from the remote target
        and route set (loose or strict, §12.2.1.1), From/To with the tags, the
        Call-ID, the next local CSeq number, Max-Forwards 70, a Via with our sent-by
        and a fresh branch, our Contact on target refreshes, then `headers` and `body`.

        Sending BYE terminates the dialog (§15.1.1: the UAC "MUST consider the
        session terminated ... as soon as the BYE request is passed to the client
        transaction"). ACK is `build_ack()`'s; CANCEL copies the request it cancels
        (§9.1) and so is not built here."""
        state = self.state
        if state is DialogState.TERMINATED:
            raise LocalProtocolError(f"dialog {self.call_id}: {method} in state terminated")
        if method == "ACK" or method == "CANCEL":
            raise LocalProtocolError(f"{method} is not built as a new request in a dialog")
        if method == "BYE" and self.role is Role.UAS and state is DialogState.EARLY:
            # §15: "the callee's UA ... MUST NOT send a BYE on early dialogs".
            raise LocalProtocolError("the callee may not send BYE in an early dialog")
        if method == "INVITE" and (self._invite_out is not None or self._invite_in is not None):
            # §14.1: "a UAC MUST NOT initiate a new INVITE transaction within a
            # dialog while another INVITE transaction is in progress in either
            # direction."
            raise LocalProtocolError("an INVITE transaction is already in progress in this dialog")
        seq = _initial_seq() if self.local_seq is None else self.local_seq + 1
        if seq > _MAX_SEQ:
            raise LocalProtocolError("local CSeq would reach 2**31 (§8.1.1.5)")
        self.local_seq = seq
        request = self._build(method, seq, via_host, via_port, transport, body, headers)
        if method == "INVITE":
            self._invite_out = seq
        elif method == "BYE":
            self.terminate()
        return request

    def build_ack(
        self,
        response: Response,
        via_host: str,
        via_port: int | None,
        transport: str = "UDP",
        body: bytes = b"",
        headers: Iterable[tuple[str, Any]] = (),
        invite: Request | None = None,
    ) -> Request:
        """The ACK for a 2xx to our INVITE (§13.2.2.4): built like any request in
        the dialog, but "The sequence number of the CSeq header field MUST be the
        same as the INVITE being acknowledged, but the CSeq method MUST be ACK", and
        with the INVITE's credentials (pass `invite` to copy them). `body` carries
        the answer when the 2xx held the offer. Hand it to `send_ack()`."""
        if not 200 <= response.status < 300 or response.cseq.method != "INVITE":
            raise LocalProtocolError(f"{response!r} is not a 2xx to an INVITE")
        if self.state is DialogState.TERMINATED:
            raise LocalProtocolError(f"dialog {self.call_id}: ACK in state terminated")
        extra = list(headers)
        if invite is not None:
            for name in _CREDENTIALS:
                if invite.has(name):  # the common case, no credentials, stays cheap
                    extra.extend((name, value) for value in _lines(invite, name))
        return self._build("ACK", response.cseq.seq, via_host, via_port, transport, body, extra, as_text=True)

    def send_ack(self, ack: Request, destination: Address) -> None:
        """Send an ACK from `build_ack()` and keep it, so that a retransmission of
        the 2xx it acknowledges gets this same ACK again."""
        if self._send is None:
            raise LocalProtocolError("this dialog was made without a send callable")
        self._ack = ack
        self._ack_destination = destination
        self._send(ack, destination)

    def on_2xx_retransmission(self, response: Response) -> bool:
        """Send the stored ACK again for a retransmitted 2xx (§13.2.2.4: "The UAC
        core MUST generate an ACK request for each 2xx received from the transaction
        layer"). Works after termination too, so a peer still retransmitting its
        2xx after our BYE stops. Returns whether an ACK went out."""
        ack = self._ack
        if ack is None or response.cseq.method != "INVITE" or response.cseq.seq != ack.cseq.seq:
            return False
        if self._send is None or self._ack_destination is None:
            return False
        log.debug("ACK again for {callID} CSeq {seq}", callID=self.call_id, seq=ack.cseq.seq)
        self._send(ack, self._ack_destination)
        return True

    def _build(
        self,
        method: str,
        seq: int,
        via_host: str,
        via_port: int | None,
        transport: str,
        body: bytes,
        headers: Iterable[tuple[str, Any]],
        as_text: bool = False,
    ) -> Request:
        uri, routes = request_target(self.remote_target, self.route_set)
        request = Request(method, uri)
        via = Via(transport, via_host, via_port, {"branch": new_branch()})
        if as_text:
            # The ACK for a 2xx is kept for 64*T1 to answer retransmissions of
            # it; as text its headers are a handful of objects fewer for the
            # garbage collector to walk, and read back typed on demand.
            request.add("Via", str(via))
            request.add("Max-Forwards", str(MAX_FORWARDS))
            if routes:
                request.add("Route", ", ".join(str(route) for route in routes))
            request.add("From", str(self.local_party))
            request.add("To", str(self.remote_party))
            request.add("Call-ID", self.call_id)
            request.add("CSeq", f"{seq} {method}")
        else:
            request.add("Via", via)
            request.add("Max-Forwards", MAX_FORWARDS)
            if routes:
                request.add("Route", routes)
            request.add("From", self.local_party.copy())
            request.add("To", self.remote_party.copy())
            request.add("Call-ID", self.call_id)
            request.add("CSeq", CSeq(seq, method))
        if method in _WITH_CONTACT and self.local_target is not None:
            request.add("Contact", NameAddr(self.local_target.copy()))
        for name, value in headers:
            request.add(name, value)
        request.body = body
        return request

    # -- responses to our requests (§12.2.1.2, §13.2.2.4) -----------------------

    def receive_response(self, response: Response) -> bool:
        """Take a response to a request we sent in this dialog (the transaction layer
        hands them up; with RFC 6026 every 2xx to an INVITE, retransmissions too).

        A 2xx to the INVITE that made an early dialog confirms it and recomputes the
        route set (§13.2.2.4); a 2xx to a target refresh replaces the remote target
        with its Contact (§12.2.1.2); a non-2xx final to that INVITE ends the early
        dialog; 481 and 408 end the dialog (§12.2.1.2: "the UAC SHOULD terminate the
        dialog"). A retransmitted 2xx gets the stored ACK again and returns False;
        everything else returns True."""
        status = response.status
        if status < 200:
            return True
        cseq = response.cseq
        method = cseq.method
        if self.state is DialogState.TERMINATED:
            if status < 300 and method == "INVITE":
                self.on_2xx_retransmission(response)
                return False
            return True
        if method == "INVITE":
            if status < 300:
                if self._ok_seq == cseq.seq:
                    self.on_2xx_retransmission(response)
                    return False
                self._ok_seq = cseq.seq
            if self._invite_out == cseq.seq:
                self._invite_out = None
        if status < 300:
            if self.state is DialogState.EARLY and method == "INVITE":
                # §13.2.2.4: "the route set for the dialog MUST be recomputed based on
                # the 2xx response using the procedures of Section 12.2.1.2."
                self.route_set = [route.copy() for route in reversed(response.record_route)]
                self._move("2xx")
            if method in TARGET_REFRESH:
                target = _contact_uri(response)
                if target is not None:
                    self.remote_target = target
        elif status == 481 or status == 408:
            self.terminate()
        elif method == "INVITE" and self.state is DialogState.EARLY:
            self._end("failure")
        return True

    # -- requests we receive (§12.2.2, §14.2) -----------------------------------

    def receive_request(self, request: Request) -> bool:
        """Check and take a request that `DialogTable.match()` found for us.

        Raises `DialogError` with the status to answer: 500 for a CSeq lower than
        the remote CSeq (§12.2.2), 491 for an INVITE while ours is in progress and
        500 with Retry-After for one while theirs is (§14.2). A target refresh
        replaces the remote target with its Contact (§12.2.2); BYE ends the dialog
        (§15.1.2). An ACK stops our 2xx retransmission; it returns True only when it
        acknowledges the 2xx being retransmitted (False for a duplicate). Every other
        accepted request returns True."""
        method = request.method
        if method == "ACK":
            answer = self._answer
            if answer is not None and answer.ack_received(request):
                self._answer = None
                return True
            return False
        if self.state is DialogState.TERMINATED:
            raise DialogError("dialog has ended", 481)
        if method == "CANCEL":
            return True  # hop by hop, matched to its INVITE by the transaction layer
        seq = request.cseq.seq
        remote = self.remote_seq
        if remote is not None and seq < remote:
            # §12.2.2: "the request is out of order and MUST be rejected with a 500".
            raise DialogError(f"CSeq {seq} is lower than {remote}", 500)
        self.remote_seq = seq
        if method == "INVITE":
            if self._invite_out is not None:
                raise DialogError("Request Pending", 491)
            if self._invite_in is not None and self._invite_in < seq:
                raise DialogError(
                    "previous INVITE still in progress",
                    500,
                    [("Retry-After", str(secrets.randbelow(11)))],
                )
            self._invite_in = seq
        if method in TARGET_REFRESH:
            target = _contact_uri(request)
            if target is not None:
                self.remote_target = target
        if method == "BYE":
            self.terminate()
        return True

    def response_sent(self, response: Response) -> None:
        """Tell the dialog about a final response we sent to a request in it (or to
        the INVITE that created it): a 2xx to an INVITE confirms an early dialog and
        a non-2xx final ends it. Use `answer()` for the 2xx so that it is
        retransmitted until its ACK."""
        status = response.status
        cseq = response.cseq
        if status < 200 or cseq.method != "INVITE" or self.state is DialogState.TERMINATED:
            return
        if self._invite_in == cseq.seq:
            self._invite_in = None
        if status < 300:
            self._move("2xx")
        elif self.state is DialogState.EARLY:
            self._end("failure")

    def answer(
        self,
        response: Response,
        destination: Address,
        clock: IReactorTime,
        timers: Timers,
        on_timeout: Callable[[], object],
        send_first: bool = True,
    ) -> AnswerRetransmitter:
        """Send a 2xx to an INVITE in this dialog and retransmit it until the ACK
        arrives (§13.3.1.4). After 64*T1 without an ACK the retransmission stops and
        `on_timeout` runs: the owner should send a BYE (`new_request("BYE", ...)`).
        `send_first=False` when the server transaction already sent it once."""
        if self._send is None:
            raise LocalProtocolError("this dialog was made without a send callable")
        if self.state is DialogState.TERMINATED:
            raise LocalProtocolError(f"dialog {self.call_id}: 2xx in state terminated")
        self.response_sent(response)
        if self._answer is not None:
            self._answer.stop()

        def timed_out() -> None:
            self._answer = None
            on_timeout()

        self._answer = AnswerRetransmitter(
            clock, timers, self._send, response, destination, timed_out, send_first
        )
        return self._answer

    def retry_delay(self, rand: Callable[[], float] | None = None) -> float:
        """How long to wait before retrying a re-INVITE that got 491 (§14.1): 2.1 to
        4 s if we own the Call-ID (we sent the dialog-creating request), else 0 to
        2 s, in units of 10 ms."""
        value = (rand or _random.random)()
        if self.role is Role.UAC:
            return round(2.1 + value * 1.9, 2)
        return round(value * 2.0, 2)


def _lines(message: Message, name: str) -> Iterator[str]:
    """The raw lines of a header that is not a comma list (credentials)."""
    for header, value in message.headers():
        if header.lower() == name.lower():
            yield value
