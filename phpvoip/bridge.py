"""The bridge (the seed's SipMixer + SipDialog): owns the two legs of one call.

It hears what each leg reports and tells the other leg what to do, keeps the ring
timeout and the maximum call length, and writes the call's record when it ends.
Every SDP that crosses from one leg to the other passes through `_carry_sdp`, the one
place where a media relay will rewrite it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.interfaces import Cause, ICallLeg, ICallLegListener, LegReply, LegState

__all__ = ["Bridge", "CallRecord", "failure_for_caller"]

log = Logger()


@dataclass(slots=True)
class CallRecord:
    """What the call-record (CDR) writer will need: who, when, and why it ended."""

    id: str
    call_id: str
    caller: str
    callee: str
    routed_from: str
    routed_to: str
    inbound_module: str
    outbound_module: str
    start: float
    answer: float | None = None
    end: float | None = None
    status: int | None = None  # final status the caller saw (200 if answered)
    cause: str = ""
    hangup_by: str = ""  # "caller", "callee" or "switch"

    @property
    def duration(self) -> float:
        """Talk time in seconds (0 for unanswered calls)."""
        if self.answer is None or self.end is None:
            return 0.0
        return self.end - self.answer


def failure_for_caller(status: int, reason: str) -> tuple[int, str]:
    """Map a callee-side final error to what the caller is told.

    Challenges from the far side cannot be answered by the caller (its credentials
    are ours to give), redirects are not followed, and a 503 from downstream must
    not tell the caller that *we* are overloaded (RFC 3261 §16.7)."""
    if status in (401, 407):
        return 403, "Forbidden"
    if 300 <= status < 400:
        return 480, "Temporarily Unavailable"
    if status == 503:
        return 500, "Server Internal Error"
    if status in (481, 482, 483, 491):
        return 500, "Server Internal Error"
    return status, reason


@implementer(ICallLegListener)
class Bridge:
    """Relays between the inbound leg (faces the caller) and the outbound leg."""

    SETUP, ANSWERED, ENDED = "setup", "answered", "ended"

    def __init__(
        self,
        record: CallRecord,
        inbound: ICallLeg,
        outbound: ICallLeg,
        clock: Any,
        ring_timeout: float,
        max_duration: float,
        on_end: Callable[[Bridge], None],
    ) -> None:
        self.record = record
        self.inbound = inbound
        self.outbound = outbound
        self.clock = clock
        self.ring_timeout = ring_timeout
        self.max_duration = max_duration
        self.on_end = on_end
        self.state = self.SETUP
        self._timer: Any = None
        inbound.listener = self
        outbound.listener = self

    def __repr__(self) -> str:
        return f"<Bridge {self.record.id} {self.state}>"

    def start(self) -> None:
        """Dial the destination with the caller's offer and start the ring timer."""
        self.outbound.offer = self._carry_sdp(self.inbound, self.inbound.remote_sdp)
        self._timer = self.clock.callLater(self.ring_timeout, self._ring_timeout)
        self.outbound.dial()

    # -- what the legs report ----------------------------------------------------

    def leg_progress(self, leg: ICallLeg, status: int, reason: str, sdp: bytes | None) -> None:
        if leg is self.outbound and self.state == self.SETUP and status > 100:
            self.inbound.progress(status, reason, self._carry_sdp(leg, sdp))

    def leg_answered(self, leg: ICallLeg, sdp: bytes | None) -> None:
        if leg is not self.outbound or self.state != self.SETUP:
            return
        self.state = self.ANSWERED
        self._cancel_timer()
        self.record.answer = self.clock.seconds()
        self.record.status = 200
        self._timer = self.clock.callLater(self.max_duration, self._too_long)
        self.inbound.answer(self._carry_sdp(leg, sdp))

    def leg_failed(self, leg: ICallLeg, status: int, reason: str) -> None:
        if self.state == self.ENDED:
            return
        if leg is self.outbound:
            status, reason = failure_for_caller(status, reason)
            self.inbound.reject(status, reason)
            self._end(status, f"{status} {reason}", "callee")
        else:
            # An inbound leg "fails" only when it is local (an app hanging up
            # before answer): treat it as the caller giving up.
            self.outbound.hangup(Cause(status, reason, "remote"))
            self._end(487, f"{status} {reason}", "caller")

    def leg_ended(self, leg: ICallLeg, cause: Cause) -> None:
        if self.state == self.ENDED:
            return
        other = self.outbound if leg is self.inbound else self.inbound
        other.hangup(cause)
        side = "caller" if leg is self.inbound else "callee"
        if cause.origin == "timeout":
            side = "switch"
        status = self.record.status if self.state == self.ANSWERED else (cause.status or 487)
        self._end(status, cause.text or "Normal call clearing", side)

    def leg_request(
        self, leg: ICallLeg, method: str, body: bytes, content_type: str | None, headers: Any
    ) -> defer.Deferred:
        if self.state != self.ANSWERED:
            return defer.succeed(LegReply(491 if method == "INVITE" else 481))
        other = self.outbound if leg is self.inbound else self.inbound
        if content_type == "application/sdp" and body:
            body = self._carry_sdp(leg, body) or b""
        d = defer.maybeDeferred(other.request, method, body, content_type, headers)

        def carry_answer(reply: LegReply) -> LegReply:
            if reply.content_type == "application/sdp" and reply.body:
                body = self._carry_sdp(other, reply.body) or b""
                return LegReply(reply.status, reply.reason, body, reply.content_type)
            return reply

        return d.addCallback(carry_answer)

    # -- the switch's own decisions ------------------------------------------------

    def hangup(self, cause: Cause) -> None:
        """End the call from the switch's side (operator, shutdown, limits)."""
        if self.state == self.ENDED:
            return
        if self.state == self.SETUP:
            self.outbound.hangup(cause)
            self.inbound.reject(cause.status or 480, cause.text or "Temporarily Unavailable")
            self._end(cause.status or 480, cause.text, "switch")
        else:
            self.outbound.hangup(cause)
            self.inbound.hangup(cause)
            self._end(self.record.status, cause.text, "switch")

    def _ring_timeout(self) -> None:
        self._timer = None
        log.info("call {call} not answered in {seconds}s", call=self.record.id, seconds=self.ring_timeout)
        self.hangup(Cause(480, "No Answer", "local"))

    def _too_long(self) -> None:
        self._timer = None
        log.info("call {call} reached its maximum length", call=self.record.id)
        self.hangup(Cause(None, "Maximum call length reached", "local"))

    # -- helpers -------------------------------------------------------------------

    def _carry_sdp(self, from_leg: ICallLeg, sdp: bytes | None) -> bytes | None:
        """The SDP one leg sent, as the other leg should see it (unchanged while
        media flows directly between the endpoints)."""
        return sdp

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _end(self, status: int | None, cause: str, by: str) -> None:
        self.state = self.ENDED
        self._cancel_timer()
        record = self.record
        record.end = self.clock.seconds()
        if record.status is None:
            record.status = status
        record.cause = cause
        record.hangup_by = by
        # The legs outlive the call: their transactions stay for 64*T1 to absorb
        # retransmissions. Were they still to point here, the bridge and the other
        # leg would live as long, and every full garbage collection would walk
        # them (at 400 calls/s that is what made the collector pause past T1).
        # Every event an ended bridge could hear is one it ignores.
        self.inbound.listener = None
        self.outbound.listener = None
        self.on_end(self)

    @property
    def legs_terminated(self) -> bool:
        return self.inbound.state == LegState.TERMINATED and self.outbound.state == LegState.TERMINATED
