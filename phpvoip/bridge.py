"""The bridge (the seed's SipMixer + SipDialog): owns the legs of one call.

It hears what each leg reports and tells the other leg what to do, keeps the ring
timeout and the maximum call length, fills in the call's `CallRecord` and publishes
ringing, answer and transfer as call events. It is a state machine:

    setup ─(callee answers)→ answered ─(rebridge)→ rebridging ─(joining answers)→ answered
      │                          │                    │ (joining fails: back to answered,
      │                          │                    │  or ended when nobody is left)
      └──(fail / cancel / hangup)┴────(BYE / hangup)──┴──────────────────→ ended

Events are named by the role of the leg that reports them: in setup the ``caller``
(inbound) and ``callee`` (outbound) legs; once answered both are a ``party``; while
re-bridging the party that stays is ``kept``, the one being replaced ``leaving`` and
the new one ``joining``.

The behaviour is split by topic: re-bridging (transfer, pickup, IVR exits) is in
`phpvoip.bridge_rebridge`, how SDP crosses between the legs (direct, or through a
media engine, with delayed offers) in `phpvoip.bridge_media`, and the states in
`phpvoip.bridge_state`; this module has the table, call setup, the answered call and
its end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip.bridge_media import RETRY_AFTER, RTP_TIMEOUT, SDP, MediaCrossings, media_error
from phpvoip.bridge_rebridge import TRANSFERRED, RebridgeFailed, Rebridging, note_call_ids
from phpvoip.bridge_state import B, BridgeState
from phpvoip.callrecord import CallRecord
from phpvoip.events import CallAnswered, CallEvents, CallRinging
from phpvoip.interfaces import Cause, ICallLeg, ICallLegListener, LegReply, LegState
from phpvoip.statemachine import StateMachine

__all__ = [
    "RETRY_AFTER", "RTP_TIMEOUT", "TRANSFERRED", "Bridge", "BridgeState", "CallRecord", "RebridgeFailed",
    "failure_for_caller", "media_error",
]

log = Logger()

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
class Bridge(Rebridging, MediaCrossings, StateMachine):
    """Relays between the legs of one call; `inbound` faces the caller."""

    TABLE = {
        B.SETUP: {
            "callee_progress": "_relay_progress",
            "callee_answered": "_answered",
            "callee_failed": "_callee_failed",
            "callee_ended": "_callee_ended",
            "callee_request": "_refuse_request",
            "callee_refer": "_refuse_refer",
            "caller_ended": "_caller_gone",
            "caller_failed": "_caller_gave_up",  # a local caller hung up before answer
            "caller_request": "_refuse_request",
            "caller_refer": "_refuse_refer",
            "hangup": "_hang_up_setup",
            "ring_timeout": "_ring_timeout",
            "rebridge": "_cannot_rebridge",
        },
        B.ANSWERED: {
            "party_ended": "_party_ended",
            "party_request": "_relay_request",
            "party_refer": "_refer",
            "party_acked": "_relay_ack",
            "hangup": "_hang_up_answered",
            "too_long": "_too_long",
            "rebridge": "_start_rebridge",
        },
        B.REBRIDGING: {
            "kept_ended": "_kept_ended",
            "kept_request": "_relay_kept_request",
            "kept_refer": "_refuse_refer",
            "kept_acked": "_relay_kept_ack",
            "leaving_acked": "_relay_ack",
            "leaving_ended": "_leaving_ended",
            "leaving_request": "_relay_request",
            "leaving_refer": "_refuse_refer",
            "joining_progress": "_joining_progress",
            "joining_answered": "_joined",
            "joining_failed": "_joining_failed",
            "joining_request": "_refuse_request",
            "joining_refer": "_refuse_refer",
            "hangup": "_hang_up_rebridging",
            "too_long": "_too_long",
            "ring_timeout": "_joining_not_answered",
            "stop_joining": "_joining_withdrawn",
            "rebridge": "_cannot_rebridge",
        },
        B.ENDED: {
            "hangup": "_ignore",
            "ring_timeout": "_ignore",
            "too_long": "_ignore",
            "rebridge": "_cannot_rebridge",
        },
    }

    def __init__(
        self,
        record: CallRecord,
        inbound: ICallLeg,
        outbound: ICallLeg,
        clock: Any,
        ring_timeout: float,
        max_duration: float,
        on_end: Callable[[Bridge], None],
        events: CallEvents | None = None,
        on_refer: Callable[..., Any] | None = None,
        media: Any = None,
    ) -> None:
        self.record = record
        self.inbound = inbound
        self.outbound = outbound
        self.clock = clock
        self.ring_timeout = ring_timeout
        self.max_duration = max_duration
        self.on_end = on_end
        self.events = events if events is not None else CallEvents()
        # Called as on_refer(bridge, referrer, target, referred_by, report) for a
        # REFER; None refuses every transfer.
        self.on_refer = on_refer
        self.state = B.SETUP
        self.parties: list[Any] = [inbound, outbound]  # the two legs joined once answered
        self.kept: Any = None
        self.leaving: Any = None
        self.joining: Any = None
        self._joined_sides: dict[Any, str] | None = None  # sides of legs joined by re-bridges
        self._rebridged: defer.Deferred | None = None
        self._on_join_progress: Callable[[int, str], None] | None = None
        self._join_info: tuple[str, str] = ("", "")  # (by, module) of the running re-bridge
        self._sdp_to: dict[Any, bytes | None] = {}  # the last SDP each leg's far end was sent
        self._continuing: set[Any] | None = None  # legs whose far end must keep seeing one session
        self._timer: Any = None
        self._join_timer: Any = None
        # The IMediaEngine (None: direct media), the call's session once opened, each
        # leg's side in it, and the queue that keeps the crossings in order.
        self.media = media
        self.session: Any = None
        self._sides: dict[Any, str] = {}
        self._crossings: defer.Deferred | None = None
        self._delayed = False  # the caller's INVITE had no SDP: the callee's 2xx offers
        inbound.listener = self
        outbound.listener = self

    def __repr__(self) -> str:
        return f"<Bridge {self.record.id} {self.state.value}>"

    def start(self) -> None:
        """Dial the destination with the caller's offer and start the ring timer.

        With a media engine the call's session is opened first; the destination is
        dialled once the engine has rewritten the offer. An INVITE without SDP
        (delayed offer) dials the callee without SDP; the engine then sees the
        callee's offer and the caller's answer (from its ACK)."""
        offer = self.inbound.remote_sdp
        self._delayed = offer is None
        if self.media is not None:
            try:
                self.session = self.media.session(self.record.id, self._media_timeout)
            except Exception:
                self._refuse_for_media(Failure())
                return
            self._sides = {self.inbound: "a", self.outbound: "b"}
            self._crossings = defer.succeed(None)
        self._timer = self.clock.callLater(self.ring_timeout, self._event, "ring_timeout")
        self._cross(self.inbound, self.outbound, offer, "offer", self._dial, self._refuse_for_media)

    def _dial(self, offer: bytes | None) -> None:
        self.outbound.offer = offer
        self.outbound.dial()
        note_call_ids(self.record, self.outbound)

    # -- what the legs report (ICallLegListener) ------------------------------------------------

    def _role(self, leg: Any) -> str:
        state = self.state
        if state is B.SETUP:
            return "caller" if leg is self.inbound else "callee"
        if state is B.REBRIDGING:
            if leg is self.kept:
                return "kept"
            return "joining" if leg is self.joining else "leaving"
        return "party"

    def leg_progress(self, leg: ICallLeg, status: int, reason: str, sdp: bytes | None) -> None:
        self._event(self._role(leg) + "_progress", leg, status, reason, sdp)

    def leg_answered(self, leg: ICallLeg, sdp: bytes | None) -> None:
        self._event(self._role(leg) + "_answered", leg, sdp)

    def leg_failed(self, leg: ICallLeg, status: int, reason: str) -> None:
        self._event(self._role(leg) + "_failed", leg, status, reason)

    def leg_acked(self, leg: ICallLeg, sdp: bytes | None) -> None:
        self._event(self._role(leg) + "_acked", leg, sdp)

    def leg_ended(self, leg: ICallLeg, cause: Cause) -> None:
        self._event(self._role(leg) + "_ended", leg, cause)

    def leg_request(
        self, leg: ICallLeg, method: str, body: bytes, content_type: str | None, headers: Any
    ) -> defer.Deferred:
        return self._event(self._role(leg) + "_request", leg, method, body, content_type, headers)

    def leg_refer(self, leg: ICallLeg, target: Any, referred_by: Any, report: Any) -> Any:
        return self._event(self._role(leg) + "_refer", leg, target, referred_by, report)

    # -- the switch's own decisions ----------------------------------------------------------------

    def hangup(self, cause: Cause) -> None:
        """End the call from the switch's side (operator, shutdown, limits)."""
        self._event("hangup", cause)

    def rebridge(self, keep: Any, joining: Any, by: str = "switch", module: str = "",
                 ring_timeout: float | None = None,
                 on_progress: Callable[[int, str], None] | None = None) -> defer.Deferred:
        """Join `keep` (one of the two parties) to `joining` (an outbound leg not
        dialled yet) instead of the other party. Fires with `joining` once it has
        answered and the other party is hung up; fails with `RebridgeFailed` when
        it does not answer (the call then stays as it was), or with 487 when the
        Deferred is cancelled while the new leg rings (it is CANCELled).
        `on_progress(status, reason)` hears the new leg's provisional responses."""
        return self._event("rebridge", keep, joining, by, module, ring_timeout, on_progress)

    def other(self, leg: Any) -> Any:
        """The party `leg` talks to (or would talk to again after a re-bridge)."""
        if self.state is B.REBRIDGING:
            return self.leaving if leg is self.kept else self.kept
        first, second = self.parties
        return second if leg is first else first

    def side_of(self, leg: Any) -> str:
        """Which side of the original call `leg` is on: "caller" or "callee" (a
        joined leg takes the side of the one it replaced)."""
        if leg is self.inbound:
            return "caller"
        if leg is self.outbound:
            return "callee"
        sides = self._joined_sides
        return "switch" if sides is None else sides.get(leg, "switch")

    # -- setup -------------------------------------------------------------------------------------

    def _relay_progress(self, leg: Any, status: int, reason: str, sdp: bytes | None) -> None:
        if status <= 100:
            return
        if self._delayed and self.session is not None:
            # Early SDP to an INVITE without one would be an offer the engine is
            # given again with the 2xx; the caller gets the engine's with the 2xx.
            sdp = None
        self._cross(leg, self.inbound, sdp, "answer", lambda carried: self._ringing(status, reason, carried),
                    self._refuse_for_media)

    def _ringing(self, status: int, reason: str, sdp: bytes | None) -> None:
        record = self.record
        if record.ring is None:
            record.ring = self.clock.seconds()
            self.events.publish(CallRinging(record, record.ring, status))
        self.inbound.progress(status, reason, sdp)

    def _answered(self, leg: Any, sdp: bytes | None) -> None:
        # The call is answered once the engine has the callee's answer: until then
        # it is still in setup (a BYE or CANCEL meanwhile ends it as one). After an
        # INVITE without SDP the callee's 2xx holds the offer (§13.2.1).
        kind = "offer" if self._delayed else "answer"
        self._cross(leg, self.inbound, sdp, kind, self._answer_caller, self._refuse_for_media)

    def _answer_caller(self, sdp: bytes | None) -> None:
        if self.state is not B.SETUP:
            return
        self.state = B.ANSWERED
        self._cancel_timer()
        record = self.record
        record.answer = self.clock.seconds()
        record.status = 200
        self._timer = self.clock.callLater(self.max_duration, self._event, "too_long")
        self.inbound.answer(sdp)
        self.events.publish(CallAnswered(record, record.answer, record.answer - record.start))

    def _callee_failed(self, leg: Any, status: int, reason: str) -> None:
        status, reason = failure_for_caller(status, reason)
        self.inbound.reject(status, reason)
        self._end(status, f"{status} {reason}", "callee")

    def _callee_ended(self, leg: Any, cause: Cause) -> None:
        self.inbound.hangup(cause)
        status = cause.status or 487
        self._end(status, cause.text or "Normal call clearing", "callee")

    def _caller_gone(self, leg: Any, cause: Cause) -> None:
        self.outbound.hangup(cause)
        self._end(cause.status or 487, cause.text or "Caller cancelled", "caller", cancelled=True)

    def _caller_gave_up(self, leg: Any, status: int, reason: str) -> None:
        self.outbound.hangup(Cause(status, reason, "remote"))
        self._end(487, f"{status} {reason}", "caller", cancelled=True)

    def _refuse_request(self, leg: Any, method: str, body: bytes, content_type: Any,
                        headers: Any) -> defer.Deferred:
        return defer.succeed(LegReply(491 if method == "INVITE" else 481))

    def _refuse_refer(self, leg: Any, target: Any, referred_by: Any, report: Any) -> LegReply:
        return LegReply(491, "Request Pending")

    def _hang_up_setup(self, cause: Cause) -> None:
        self.outbound.hangup(cause)
        self.inbound.reject(cause.status or 480, cause.text or "Temporarily Unavailable")
        self._end(cause.status or 480, cause.text, "switch")

    def _ring_timeout(self) -> None:
        self._timer = None
        log.info("call {call} not answered in {seconds}s", call=self.record.id, seconds=self.ring_timeout)
        self._hang_up_setup(Cause(480, "No Answer", "local"))

    # -- answered --------------------------------------------------------------------------------

    def _party_ended(self, leg: Any, cause: Cause) -> None:
        self.other(leg).hangup(cause)
        self._end(200, cause.text or "Normal call clearing", self._hung_up_by(leg, cause),
                  cause_status=cause.status)

    def _relay_request(self, leg: Any, method: str, body: bytes, content_type: str | None,
                       headers: Any) -> defer.Deferred:
        other = self.other(leg)
        if self.session is not None:
            return self._relay_request_media(leg, other, method, body, content_type, headers)
        if content_type == SDP and body:
            body = self._carry_sdp(other, body) or b""
        d = defer.maybeDeferred(other.request, method, body, content_type, headers)

        def carry_answer(reply: LegReply) -> LegReply:
            if reply.content_type == SDP and reply.body:
                return LegReply(reply.status, reply.reason, self._carry_sdp(leg, reply.body) or b"",
                                reply.content_type)
            return reply

        return d.addCallback(carry_answer)

    def _refer(self, leg: Any, target: Any, referred_by: Any, report: Any) -> Any:
        if self.on_refer is None:
            return LegReply(603, "Transfer Not Allowed")
        return self.on_refer(self, leg, target, referred_by, report)

    def _hang_up_answered(self, cause: Cause) -> None:
        for leg in self.parties:
            leg.hangup(cause)
        self._end(200, cause.text, "switch", cause_status=cause.status)

    def _too_long(self) -> None:
        self._timer = None
        log.info("call {call} reached its maximum length", call=self.record.id)
        self.hangup(Cause(None, "Maximum call length reached", "local"))

    # -- helpers ---------------------------------------------------------------------------------

    def _hung_up_by(self, leg: Any, cause: Cause) -> str:
        """Who ended the call when `leg` ended with `cause`: its side, or the
        switch when the far end stopped answering."""
        return "switch" if cause.origin == "timeout" else self.side_of(leg)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _cancel_join_timer(self) -> None:
        if self._join_timer is not None and self._join_timer.active():
            self._join_timer.cancel()
        self._join_timer = None

    def _end(self, status: int | None, reason: str, by: str, cause_status: int | None = None,
             cancelled: bool = False) -> None:
        self.state = B.ENDED
        self._cancel_timer()
        self._cancel_join_timer()
        self.record.finish(self.clock.seconds(), status, reason, by, cause_status, cancelled)
        self._close_media()  # while the sides of joined legs are still known
        # The legs outlive the call: their transactions stay for 64*T1 to absorb
        # retransmissions. Were they still to point here, the bridge and the other
        # leg would live as long, and every full garbage collection would walk
        # them (at 400 calls/s that is what made the collector pause past T1).
        for leg in (self.inbound, self.outbound, *self.parties):
            leg.listener = None
        self.parties = []
        self._joined_sides = None
        self._sdp_to.clear()
        self._continuing = None
        self.on_end(self)

    @property
    def legs_terminated(self) -> bool:
        return self.inbound.state is LegState.TERMINATED and self.outbound.state is LegState.TERMINATED

