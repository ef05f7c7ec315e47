"""End-to-end reliability of the 2xx to an INVITE and its ACK (RFC 3261 §13.3.1.4,
§13.2.2.4, RFC 6026).

A 2xx ends the INVITE server transaction, so no transaction retransmits it: the UAS
core does, until the ACK comes; and the ACK is no transaction's either, so the UAC
core sends it again for each 2xx retransmission. Both bypass the transaction layer
and go straight to a `send(message, destination)` callable.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from phpvoip.sip.address import Address
from phpvoip.sip.errors import LocalProtocolError
from phpvoip.sip.message import Message, Request, Response
from phpvoip.sip.timers import Timers

__all__ = ["AnswerRetransmitter", "AnswerState", "Send"]

log = Logger()

Send = Callable[[Message, Address], None]


class AnswerState(enum.Enum):
    """Where a 2xx retransmitter is.

    ::

        RETRANSMITTING --ACK with the INVITE's CSeq--> ACKNOWLEDGED
        RETRANSMITTING --64*T1 without ACK---------> TIMED_OUT (on_timeout runs)
        RETRANSMITTING --stop()--------------------> STOPPED
    """

    RETRANSMITTING = "retransmitting"
    ACKNOWLEDGED = "acknowledged"
    TIMED_OUT = "timed out"
    STOPPED = "stopped"


class AnswerRetransmitter:
    """Sends a 2xx to an INVITE at once and again at T1, 3*T1, 7*T1, ... (the
    interval doubling up to T2) until its ACK arrives; after 64*T1 without an ACK it
    stops and calls `on_timeout`, where the owner ends the session with a BYE.

    §13.3.1.4: "The 2xx response is passed to the transport with an interval that
    starts at T1 seconds and doubles for each retransmission until it reaches T2
    seconds ... If the server retransmits the 2xx response for 64*T1 seconds without
    receiving an ACK, the dialog is confirmed, but the session SHOULD be terminated.
    This is accomplished with a BYE." It does so on every transport: a reliable first
    hop does not make the path to the UAC reliable.

    `send_first=False` when the 2xx already went out (through the server
    transaction); the retransmission instants stay counted from now.
    """

    __slots__ = (
        "state",
        "response",
        "destination",
        "_clock",
        "_timers",
        "_send",
        "_on_timeout",
        "_seq",
        "_interval",
        "_deadline",
        "_next",
        "_give_up",
    )

    def __init__(
        self,
        clock: IReactorTime,
        timers: Timers,
        send: Send,
        response: Response,
        destination: Address,
        on_timeout: Callable[[], object],
        send_first: bool = True,
    ) -> None:
        cseq = response.cseq
        if not 200 <= response.status < 300 or cseq.method != "INVITE":
            raise LocalProtocolError(f"only a 2xx to an INVITE is retransmitted end to end, not {response!r}")
        self.state = AnswerState.RETRANSMITTING
        self.response = response
        self.destination = destination
        self._clock = clock
        self._timers = timers
        self._send = send
        self._on_timeout = on_timeout
        self._seq = cseq.seq
        self._interval = timers.t1
        self._deadline = clock.seconds() + timers.b
        if send_first:
            send(response, destination)
        self._next: IDelayedCall | None = clock.callLater(timers.t1, self._retransmit)
        self._give_up: IDelayedCall | None = clock.callLater(timers.b, self._timed_out)

    def ack_received(self, ack: Request) -> bool:
        """Stop on the ACK for this 2xx (§13.3.1.4: "Response retransmissions cease
        when an ACK request for the response is received"). The ACK carries the
        INVITE's CSeq number; another number is not ours and changes nothing.
        Returns whether this ACK was the one awaited."""
        if self.state is not AnswerState.RETRANSMITTING or ack.cseq.seq != self._seq:
            return False
        self.state = AnswerState.ACKNOWLEDGED
        self._cancel()
        return True

    def stop(self) -> None:
        """Stop retransmitting without an ACK (the dialog ended, or a newer 2xx
        replaces this one). Does nothing once the retransmitter has finished."""
        if self.state is AnswerState.RETRANSMITTING:
            self.state = AnswerState.STOPPED
            self._cancel()

    @property
    def seq(self) -> int:
        """The CSeq number of the INVITE answered: what the ACK must carry."""
        return self._seq

    def _retransmit(self) -> None:
        self._next = None
        response = self.response
        log.debug(
            "retransmitting {status} for {callID} CSeq {seq}",
            status=response.status,
            callID=response.call_id,
            seq=self._seq,
        )
        self._send(response, self.destination)
        self._interval = min(self._interval * 2, self._timers.t2)
        # No retransmission at or after the give-up instant.
        if self._clock.seconds() + self._interval < self._deadline:
            self._next = self._clock.callLater(self._interval, self._retransmit)

    def _timed_out(self) -> None:
        self._give_up = None
        self.state = AnswerState.TIMED_OUT
        self._cancel()
        log.warn(
            "no ACK for the {status} to {callID} CSeq {seq} within 64*T1",
            status=self.response.status,
            callID=self.response.call_id,
            seq=self._seq,
        )
        self._on_timeout()

    def _cancel(self) -> None:
        for call in (self._next, self._give_up):
            if call is not None and call.active():
                call.cancel()
        self._next = self._give_up = None
