"""Client transactions (RFC 3261 §17.1, amended by RFC 6026 §8.4): INVITE and non-INVITE.

A client transaction sends a request, retransmits it over UDP, matches the responses
the layer gives it and passes them to `on_response`; when no final response comes in
64*T1 it hands over a local 408 instead, and on a transport error a local 503
(§17.1.4). The ACK for a non-2xx final response is its own business (§17.1.1.3); the
ACK for a 2xx belongs to the transaction user.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from phpvoip.sip.address import Address
from phpvoip.sip.headers import CSeq, NameAddr
from phpvoip.sip.message import Request, Response
from phpvoip.sip.transaction_base import (
    ResponseCallback,
    TransactionState,
    _Transaction,
    local_response,
)

if TYPE_CHECKING:
    from phpvoip.sip.transaction import TransactionLayer

__all__ = [
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "ClientTransaction",
    "make_ack",
    "make_cancel",
]

log = Logger()
S = TransactionState


def response_event(response: Response) -> str:
    """The table event a received response is: ``1xx``, ``2xx`` or ``final`` (300-699)."""
    status = response.status
    if status < 200:
        return "1xx"
    if status < 300:
        return "2xx"
    return "final"


def _copy_routing(source: Request, target: Request) -> None:
    """Give `target` the single top Via and the Route set of `source`, which an ACK
    for a non-2xx (§17.1.1.3) and a CANCEL (§9.1) both need to retrace its path."""
    target.add("Via", source.top_via.copy())
    for name, text in source.headers():
        if name.lower() == "route":
            target.add(name, text)
    target.add("Max-Forwards", 70)


def _hop_request(method: str, invite: Request, to: NameAddr) -> Request:
    """A request that retraces `invite`'s first hop: its Request-URI, top Via and
    Route, From, Call-ID and CSeq number, with `method` and `to`."""
    request = Request(method, invite.uri.copy())
    _copy_routing(invite, request)
    request.add("From", invite.from_.copy())
    request.add("To", to.copy())
    request.add("Call-ID", invite.call_id)
    request.add("CSeq", CSeq(invite.cseq.seq, method))
    return request


def make_ack(invite: Request, response: Response) -> Request:
    """The ACK for a 300-699 response to `invite` (§17.1.1.3): same Request-URI,
    Call-ID, From and CSeq number; To from the response (with its tag); one Via
    equal to the INVITE's top Via; the INVITE's Route headers."""
    return _hop_request("ACK", invite, response.to)


def make_cancel(invite: Request) -> Request:
    """A CANCEL for `invite` (§9.1): Request-URI, Call-ID, To, From and the CSeq
    number identical (tags included), CSeq method CANCEL, one Via equal to the
    INVITE's top Via (so the server matches it, §9.2), and the INVITE's Route."""
    return _hop_request("CANCEL", invite, invite.to)


def _nobody(response: Response) -> None:
    """The `on_response` of a machine that will deliver nothing more."""


class ClientTransaction(_Transaction):
    """What both client machines offer their user.

    `on_response` receives every response the machine passes up, and exactly one
    final one unless it is an INVITE that got 2xx (then every 2xx while Accepted).
    It may be called before `TransactionLayer.send_request` returns (a transport
    error raised while sending, a CANCEL with nothing left to cancel).
    """

    __slots__ = ("destination", "on_response", "_interval")

    def __init__(
        self,
        layer: TransactionLayer,
        request: Request,
        destination: Address,
        on_response: ResponseCallback,
    ) -> None:
        super().__init__(layer, request, destination)
        self.destination = destination
        self.on_response = on_response
        self._interval = layer.timers.t1
        self.state = S.HELD

    def _receive(self, response: Response) -> None:
        self._event(response_event(response), response)

    def _fail(self, status: int) -> None:
        """Terminate and give the user a local `status` response instead of a real one."""
        self._terminate()
        log.debug(
            "client transaction {branch} {method} ended locally with {status}",
            branch=self.branch,
            method=self.method,
            status=status,
            callID=self.call_id,
        )
        self.on_response(local_response(self.request, status))  # type: ignore[arg-type]

    def _timeout(self, arg: Any) -> None:
        self._fail(408)

    def _transport_failed(self, arg: Any) -> None:
        # §17.1.4: a transport failure ends the transaction at once; 503 (§8.1.3.1).
        self._fail(503)

    def _deliver(self, response: Response) -> None:
        self.on_response(response)


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 Figure 5 with RFC 6026's Accepted state.

    - Calling: sent; over UDP timer A retransmits at T1, 2*T1, 4*T1 ... (no cap);
      timer B (64*T1) ends it with a local 408.
    - Proceeding: a provisional came; no more retransmissions, no timeout (the user
      bounds the ringing, with CANCEL). §9.1: once a CANCEL for it has been sent,
      64*T1 without a final response ends it with a local 487.
    - Completed: a 300-699 came and was ACKed; retransmissions of it are ACKed
      again, for timer D (32 s, 0 over TCP).
    - Accepted (RFC 6026 §8.4): a 2xx came; every 2xx (retransmissions, forks) goes
      to the user, who ACKs it, for timer M (64*T1).
    """

    __slots__ = ("_ack", "_cancel")

    TABLE = {
        # Held lasts only while the layer registers the INVITE and starts it.
        S.HELD: {"start": "_start", "1xx": "_absorb", "2xx": "_absorb", "final": "_absorb"},
        S.CALLING: {
            "timer_A": "_retransmit",
            "timer_B": "_calling_timeout",
            "1xx": "_proceed",
            "2xx": "_accept",
            "final": "_complete",
            "transport_error": "_calling_failed",
        },
        S.PROCEEDING: {
            "1xx": "_deliver",
            "2xx": "_accept",
            "final": "_complete",
            "transport_error": "_transport_failed",
            "cancel_sent": "_guard",
            "timer_cancel": "_cancel_expired",
        },
        S.COMPLETED: {
            "1xx": "_absorb",
            # A 2xx after a non-2xx can only come from another fork; it made a
            # dialog that the user must ACK and end, so it goes up.
            "2xx": "_deliver",
            "final": "_resend_ack",
            "timer_D": "_end",
            # §17.1.1.2 Figure 5: the ACK could not be sent; the user already has
            # the final response, so there is nothing more to tell it.
            "transport_error": "_end",
        },
        S.ACCEPTED: {
            "1xx": "_absorb",
            "2xx": "_deliver",
            "final": "_absorb",
            "timer_M": "_end",
            # ACKs for 2xx are the user's; a failure to send them is its concern.
            "transport_error": "_absorb",
        },
    }

    def __init__(
        self,
        layer: TransactionLayer,
        request: Request,
        destination: Address,
        on_response: ResponseCallback,
    ) -> None:
        super().__init__(layer, request, destination, on_response)
        self._ack: Request | None = None
        # A CANCEL the user sent while we were still Calling: §9.1 says it must
        # wait for a provisional response.
        self._cancel: ClientNonInviteTransaction | None = None

    # -- Calling ---------------------------------------------------------------

    def _start(self, arg: Any) -> None:
        timers = self._layer.timers
        self.state = S.CALLING
        if not self.reliable:
            self._arm("A", timers.t1)
        self._arm("B", 64 * timers.t1)
        self._send(self.request, self.destination)

    def _retransmit(self, arg: Any) -> None:
        # §17.1.1.2: "MUST reset the timer with a value of 2*T1" ... doubling each
        # time; unlike timer E there is no T2 cap for INVITE.
        self._interval *= 2
        self._arm("A", self._interval)
        self._resend(self.request, self.destination)

    def _calling_timeout(self, arg: Any) -> None:
        self._drop_cancel()
        self._fail(408)

    def _calling_failed(self, arg: Any) -> None:
        self._drop_cancel()
        self._fail(503)

    def _proceed(self, response: Response) -> None:
        self._disarm("A", "B")
        self.state = S.PROCEEDING
        self._release_cancel()
        self._deliver(response)

    # -- CANCEL bookkeeping (§9.1) ---------------------------------------------

    def hold_cancel(self, cancel: ClientNonInviteTransaction) -> None:
        """Keep `cancel` until a provisional response arrives (called by the layer)."""
        self._cancel = cancel

    def _release_cancel(self) -> None:
        cancel, self._cancel = self._cancel, None
        if cancel is not None and not cancel.terminated:
            cancel._event("start")
            self._guard(None)

    def _drop_cancel(self) -> None:
        """A final response or failure came first: §9.1 forbids sending the
        CANCEL now, so it ends with a local 481."""
        cancel, self._cancel = self._cancel, None
        if cancel is not None and not cancel.terminated:
            cancel._event("abandon")

    def _guard(self, arg: Any) -> None:
        # §9.1: "If there is no final response for the original request in 64*T1
        # seconds ..., the client SHOULD then consider the original transaction
        # cancelled and SHOULD destroy the client transaction".
        if "cancel" not in self._calls:
            self._arm("cancel", 64 * self._layer.timers.t1)

    def _cancel_expired(self, arg: Any) -> None:
        self._fail(487)

    # -- final responses ---------------------------------------------------------

    def _accept(self, response: Response) -> None:
        self._disarm("A", "B", "cancel")
        self.state = S.ACCEPTED
        self._arm("M", 64 * self._layer.timers.t1)
        self._drop_cancel()
        self._let_go()  # Accepted only passes 2xx up
        self._deliver(response)

    def _complete(self, response: Response) -> None:
        self._disarm("A", "B", "cancel")
        self.state = S.COMPLETED
        self._ack = make_ack(self.request, response)  # type: ignore[arg-type]
        self._drop_cancel()
        self._let_go()  # Completed only resends the ACK
        # Timer D: "at least 32 seconds for unreliable transports" (§17.1.1.2),
        # and never shorter than the server's timer H, during which it retransmits.
        self._wait_then_terminate("D", max(32.0, 64 * self._layer.timers.t1))
        self._send(self._ack, self.destination)
        self._deliver(response)

    def _resend_ack(self, response: Response) -> None:
        # §17.1.1.2: retransmitted finals are ACKed again and not passed up.
        self._layer.retransmissions_received += 1
        if self._ack is not None:
            self._resend(self._ack, self.destination)


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 Figure 6 (§17.1.2), plus the Held state of a waiting CANCEL.

    - Held: created, not sent. Only a CANCEL stays here, until its INVITE gets a
      provisional (then Trying) or ends first (then a local 481, §9.1).
    - Trying: sent; over UDP timer E retransmits at T1, 2*T1 ... capped at T2;
      timer F (64*T1) ends it with a local 408.
    - Proceeding: a provisional came; E keeps going but resets to T2 each time.
    - Completed: a final came; duplicates are absorbed for timer K (T4, 0 over TCP).
    """

    __slots__ = ()

    TABLE = {
        S.HELD: {
            "start": "_start",
            "abandon": "_abandon",
            "transport_error": "_transport_failed",
            # Nothing was sent, so nothing can answer it yet.
            "1xx": "_absorb",
            "2xx": "_absorb",
            "final": "_absorb",
        },
        S.TRYING: {
            "timer_E": "_retransmit",
            "timer_F": "_timeout",
            "1xx": "_proceed",
            "2xx": "_complete",
            "final": "_complete",
            "transport_error": "_transport_failed",
        },
        S.PROCEEDING: {
            "timer_E": "_retransmit_t2",
            "timer_F": "_timeout",
            "1xx": "_deliver",
            "2xx": "_complete",
            "final": "_complete",
            "transport_error": "_transport_failed",
        },
        S.COMPLETED: {
            "1xx": "_absorb",
            "2xx": "_absorb_duplicate",
            "final": "_absorb_duplicate",
            "timer_K": "_end",
            "transport_error": "_absorb",
        },
    }

    def _start(self, arg: Any) -> None:
        timers = self._layer.timers
        self.state = S.TRYING
        if not self.reliable:
            self._arm("E", timers.t1)
        self._arm("F", 64 * timers.t1)
        self._send(self.request, self.destination)

    def _abandon(self, arg: Any) -> None:
        self._fail(481)

    def _retransmit(self, arg: Any) -> None:
        # §17.1.2.2: E doubles up to T2, i.e. "MIN(2*T1, T2)", "MIN(4*T1, T2)" ...
        self._interval = min(2 * self._interval, self._layer.timers.t2)
        self._arm("E", self._interval)
        self._resend(self.request, self.destination)

    def _retransmit_t2(self, arg: Any) -> None:
        # §17.1.2.2: in Proceeding "Timer E MUST be reset with a value of T2".
        self._interval = self._layer.timers.t2
        self._arm("E", self._interval)
        self._resend(self.request, self.destination)

    def _proceed(self, response: Response) -> None:
        self.state = S.PROCEEDING
        self._deliver(response)

    def _complete(self, response: Response) -> None:
        self._disarm("E", "F")
        self.state = S.COMPLETED
        self._wait_then_terminate("K", self._layer.timers.t4)
        on_response = self.on_response
        # Completed absorbs everything: nothing more goes up, so neither the
        # request nor the user (and what it holds) need to live for timer K.
        self._let_go()
        self.on_response = _nobody
        on_response(response)
