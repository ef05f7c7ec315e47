"""Server transactions (RFC 3261 §17.2, amended by RFC 6026 §8.5-§8.7).

A server transaction is created by the layer for each new request and handed to the
transaction user with it; the user answers through `respond`. The transaction keeps
the last response to answer request retransmissions, retransmits a non-2xx final
response to INVITE over UDP until the ACK comes, and absorbs what the network
duplicates. Responses go to `send(response, source)`: the transport works out the
real destination from the Via (§18.2.2).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from phpvoip.sip.address import Address
from phpvoip.sip.errors import LocalProtocolError
from phpvoip.sip.message import Request, Response
from phpvoip.sip.transaction_base import TRYING_DELAY, TransactionState, _Transaction

if TYPE_CHECKING:
    from phpvoip.sip.transaction import TransactionLayer

__all__ = ["ServerInviteTransaction", "ServerNonInviteTransaction", "ServerTransaction"]

log = Logger()
S = TransactionState

# What a server transaction tells its user when it fails after the request went up:
# `on_failure(transaction, reason)`, reason "timeout" (timer H: the ACK never came)
# or "transport" (the response could not be sent, §17.2.4).
FailureCallback = Callable[["ServerTransaction", str], None]


class ServerTransaction(_Transaction):
    """What both server machines offer their user.

    `request` and `source` are what arrived; `last_response` is what was sent last;
    `to_tag` the To tag of the responses sent so far (None before the first tagged
    one). Set `on_failure` to hear of a failure after the request went up. Once a
    final response has left, the machine only resends or absorbs: `request` is
    dropped then (None), and after a 2xx to INVITE, which the user retransmits
    itself, `last_response` too.
    """

    __slots__ = ("source", "last_response", "to_tag", "on_failure", "key", "_interval")

    def __init__(self, layer: TransactionLayer, request: Request, source: Address, key: tuple) -> None:
        super().__init__(layer, request, source)
        self.source = source
        self.key = key
        self.last_response: Response | None = None
        self.to_tag: str | None = None
        self.on_failure: FailureCallback | None = None
        self._interval = layer.timers.t1

    def respond(self, response: Response) -> None:
        """Send `response` to the request through this transaction.

        Raises `TransactionStateError` when the machine can take no response in
        its state (e.g. anything after a final non-2xx to INVITE)."""
        status = response.status
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"status {status} is not a SIP response status")
        if status < 200:
            event = "send_1xx"
        elif status < 300:
            event = "send_2xx"
        else:
            event = "send_final"
        self._event(event, response)

    def _remember(self, response: Response) -> None:
        self.last_response = response
        to = response.to
        if to is not None and to.tag is not None:
            self.to_tag = to.tag

    def _resend_last(self, arg: Any) -> None:
        if self.last_response is not None:
            self._resend(self.last_response, self.source)

    def _failed(self, reason: str) -> None:
        self._terminate()
        log.debug(
            "server transaction {branch} failed: {reason}",
            branch=self.branch,
            reason=reason,
            callID=self.call_id,
        )
        if self.on_failure is not None:
            self.on_failure(self, reason)

    def _transport_failed(self, arg: Any) -> None:
        # §17.2.4 and Figures 7/8: a response that cannot be sent ends the
        # transaction and the user is told.
        self._failed("transport")


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 Figure 7 with RFC 6026's Accepted state.

    - Proceeding: the INVITE went up; 100 Trying goes out if the user has not
      answered in 200 ms; a retransmitted INVITE gets the last provisional again.
    - Completed: a 300-699 was sent; over UDP timer G resends it at T1, 2*T1 ...
      capped at T2, until the ACK (then Confirmed) or timer H (64*T1: failure).
    - Confirmed: ACK retransmissions are absorbed for timer I (T4, 0 over TCP).
    - Accepted (RFC 6026 §8.6/§8.7): a 2xx was sent; INVITE retransmissions are
      absorbed, 2xx retransmissions from the user go out, a matching ACK goes up,
      for timer L (64*T1).
    """

    __slots__ = ()

    TABLE = {
        S.PROCEEDING: {
            "request": "_resend_provisional",
            "timer_trying": "_send_trying",
            "send_1xx": "_send_provisional",
            "send_2xx": "_accept",
            "send_final": "_complete",
            # An ACK before any final response acknowledges nothing.
            "ack": "_absorb",
            "transport_error": "_transport_failed",
        },
        S.COMPLETED: {
            "request": "_resend_last",
            "timer_G": "_retransmit",
            "timer_H": "_ack_timeout",
            "ack": "_confirm",
            "transport_error": "_transport_failed",
        },
        S.CONFIRMED: {
            "request": "_absorb",
            "ack": "_absorb_duplicate",
            "timer_I": "_end",
            "transport_error": "_absorb",
        },
        S.ACCEPTED: {
            "request": "_absorb",
            "ack": "_pass_ack",
            "send_2xx": "_resend_2xx",
            "timer_L": "_end",
            # The 2xx's reliability is the user's (§13.3.1.4); so is its failure.
            "transport_error": "_absorb",
        },
    }

    def __init__(self, layer: TransactionLayer, request: Request, source: Address, key: tuple) -> None:
        super().__init__(layer, request, source, key)
        self.state = S.PROCEEDING
        # §17.2.1: "MUST generate a 100 (Trying) response unless it knows that the
        # TU will generate a provisional or final response within 200 ms".
        self._arm("trying", TRYING_DELAY)

    # -- Proceeding ----------------------------------------------------------------

    def _send_trying(self, arg: Any) -> None:
        trying = self.request.response(100)
        # §8.2.6.1: a Timestamp in the request is copied into the 100.
        timestamp = self.request.get("Timestamp")
        if timestamp is not None:
            trying.add("Timestamp", timestamp)
        self.last_response = trying
        self._send(trying, self.source)

    def _resend_provisional(self, arg: Any) -> None:
        if self.last_response is None:
            # Retransmitted before the 200 ms passed (a small T1): quench it now.
            self._disarm("trying")
            self._send_trying(None)
        else:
            self._resend(self.last_response, self.source)

    def _send_provisional(self, response: Response) -> None:
        self._disarm("trying")
        self._remember(response)
        self._send(response, self.source)

    def _accept(self, response: Response) -> None:
        self._disarm("trying")
        self.state = S.ACCEPTED
        self._remember(response)
        self._arm("L", 64 * self._layer.timers.t1)
        self._send(response, self.source)
        self._let_go_of_all()

    def _complete(self, response: Response) -> None:
        timers = self._layer.timers
        self._disarm("trying")
        self.state = S.COMPLETED
        self._remember(response)
        if not self.reliable:
            self._arm("G", timers.t1)
        self._arm("H", 64 * timers.t1)
        self._send(response, self.source)

    # -- Completed, Confirmed ------------------------------------------------------

    def _retransmit(self, arg: Any) -> None:
        # §17.2.1: G goes T1, 2*T1, 4*T1 ... "MIN(2*T1, T2)" and stays at T2.
        self._interval = min(2 * self._interval, self._layer.timers.t2)
        self._arm("G", self._interval)
        self._resend(self.last_response, self.source)

    def _ack_timeout(self, arg: Any) -> None:
        # §17.2.1: timer H "implies that the ACK was never received ... MUST
        # indicate to the TU that a transaction failure has occurred".
        self._failed("timeout")

    def _confirm(self, arg: Any) -> None:
        self._disarm("G", "H")
        self.state = S.CONFIRMED
        self._wait_then_terminate("I", self._layer.timers.t4)

    # -- Accepted -------------------------------------------------------------------

    def _pass_ack(self, arg: tuple[Request, Address]) -> None:
        # RFC 6026 §8.7: an ACK matching a transaction in Accepted goes to the TU.
        ack, source = arg
        self._layer.user.ack_received(ack, source)

    def _resend_2xx(self, response: Response) -> None:
        self._remember(response)
        self._resend(response, self.source)
        self._let_go_of_all()

    def _let_go_of_all(self) -> None:
        # Accepted absorbs INVITE retransmissions and passes ACKs up; the 2xx is
        # the user's to retransmit (§13.3.1.4, RFC 6026 §8.6: "the server
        # transaction MUST NOT generate 2xx retransmissions on its own"), so
        # nothing of the exchange needs to stay for timer L. to_tag does.
        self._let_go()
        self.last_response = None


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 Figure 8 (§17.2.2).

    - Trying: the request went up; retransmissions are absorbed (nothing to send).
    - Proceeding: a provisional was sent; retransmissions get it again.
    - Completed: a final was sent; retransmissions get it again, further responses
      from the user are discarded, for timer J (64*T1, 0 over TCP).
    """

    __slots__ = ()

    TABLE = {
        S.TRYING: {
            "request": "_absorb",
            "send_1xx": "_send_provisional",
            "send_2xx": "_complete",
            "send_final": "_complete",
            "transport_error": "_absorb",
        },
        S.PROCEEDING: {
            "request": "_resend_last",
            "send_1xx": "_send_provisional",
            "send_2xx": "_complete",
            "send_final": "_complete",
            "transport_error": "_transport_failed",
        },
        S.COMPLETED: {
            "request": "_resend_last",
            # §17.2.2: "Any other final responses passed by the TU to the server
            # transaction MUST be discarded while in the "Completed" state."
            "send_1xx": "_discard",
            "send_2xx": "_discard",
            "send_final": "_discard",
            "timer_J": "_end",
            "transport_error": "_transport_failed",
        },
    }

    def __init__(self, layer: TransactionLayer, request: Request, source: Address, key: tuple) -> None:
        super().__init__(layer, request, source, key)
        self.state = S.TRYING

    def _send_provisional(self, response: Response) -> None:
        self.state = S.PROCEEDING
        self._remember(response)
        self._send(response, self.source)

    def _complete(self, response: Response) -> None:
        self.state = S.COMPLETED
        self._remember(response)
        self._wait_then_terminate("J", 64 * self._layer.timers.t1)
        self._send(response, self.source)
        # Completed only resends the final response.
        self._let_go()

    def _discard(self, response: Response) -> None:
        log.debug(
            "discarded {status} from the user after the final response ({branch})",
            status=response.status,
            branch=self.branch,
        )
