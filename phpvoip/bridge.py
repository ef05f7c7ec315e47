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

**Re-bridging** is the one operation transfer, queue pickup and IVR exits are made of:
keep one leg, dial a new one with the kept party's SDP, and when it answers, hang up
the leaving leg and join the kept leg to the new one, re-INVITEing the kept party when
the new media differs from what it had (same origin, next version: RFC 3264 §8).
Until the new leg answers the call stays as it was, so a failed transfer leaves the
parties talking.

Every SDP that crosses from one leg to another passes through `_cross`. Without a
media engine (``media: direct``) it is handed on at once, unchanged but for the
origin a re-bridged party must keep seeing. With one, the call has a media session
whose sides are its legs ("a" the caller, "b" the callee, "c", "d"... legs joined
by re-bridges); each crossing is an offer or answer handed to the engine, and what
the leg does next (dial, progress, answer, relay a request or its reply, re-INVITE
the kept party) runs when the engine's Deferred fires. Crossings run one after the
other in the order the legs reported them; one that completes after the call ended
does nothing. An engine that refuses (no ports, rtpengine down, unusable SDP) makes
the call fail before answer (503, 400 or 488) or the re-INVITE fail after it.

**Delayed offer** (an INVITE without SDP, RFC 3261 §13.2.1, RFC 3264 §5): the callee
is dialled without SDP, its 2xx's offer crosses to the caller as an offer (callee to
caller), and the caller's answer, which comes in its ACK (`leg_acked`), crosses back
to the callee, whose leg has held its ACK for it (`acknowledge`). A re-INVITE without
SDP takes the same path once the call is answered.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip.callrecord import CallRecord
from phpvoip.events import CallAnswered, CallEvents, CallRinging, CallTransferred
from phpvoip.interfaces import Cause, ICallLeg, ICallLegListener, LegReply, LegState, MediaUnavailable
from phpvoip.sip.sdp import SdpError, continue_origin, same_media, with_direction
from phpvoip.sip.sdp_offer import NotAcceptable
from phpvoip.statemachine import StateMachine

__all__ = ["Bridge", "BridgeState", "CallRecord", "RebridgeFailed", "failure_for_caller"]

log = Logger()

SDP = "application/sdp"
TRANSFERRED = Cause(None, "Call transferred", "local")
# RFC 3326: what the legs of a call ended for lack of media are told (others use 408 too).
RTP_TIMEOUT = Cause(408, "RTP timeout", "local")
RETRY_AFTER = (("Retry-After", "5"),)  # a media engine out of ports or down: try again soon


class _CallEnded(Exception):
    """A media crossing finished after its call had ended: nothing more to do."""


def media_error(failure: Failure) -> tuple[int, str]:
    """The SIP status and reason for a media engine's refusal: 503 when it cannot
    take the call now, 400 for SDP that does not parse, 488 for SDP it cannot use."""
    error = failure.value
    if isinstance(error, MediaUnavailable):
        return 503, "Service Unavailable"
    if isinstance(error, SdpError):
        return 400, f"Bad SDP: {error}"[:120]
    if isinstance(error, (NotAcceptable, ValueError)):
        return 488, "Not Acceptable Here"
    return 500, "Server Internal Error"


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


class RebridgeFailed(Exception):
    """The new leg of a re-bridge did not answer: `status` and `reason` say why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class BridgeState(Enum):
    SETUP = "setup"  # the destination is being dialled
    ANSWERED = "answered"  # two legs joined
    REBRIDGING = "rebridging"  # one leg kept, a new one dialled, the leaving one maybe still up
    ENDED = "ended"


B = BridgeState


@implementer(ICallLegListener)
class Bridge(StateMachine):
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
        _note_call_ids(self.record, self.outbound)

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
        it does not answer (the call then stays as it was). `on_progress(status,
        reason)` hears the new leg's provisional responses."""
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

    def _relay_request_media(self, leg: Any, other: Any, method: str, body: bytes,
                             content_type: str | None, headers: Any) -> defer.Deferred:
        """As `_relay_request`, with the offer (a re-INVITE's or UPDATE's SDP) and
        the answer (the reply's) handed to the media engine. The engine refusing
        either answers the request 503 or 488 and the call carries on as it was.
        (A reply with SDP to a request without it is an offer: handed on as one.)"""
        offered = content_type == SDP and bool(body)
        result: defer.Deferred = defer.Deferred()

        def refused(failure: Failure) -> None:
            status, reason = media_error(failure)
            log.info("call {call}: media refused the {method}'s SDP: {status} {error}", call=self.record.id,
                     method=method, status=status, error=failure.getErrorMessage())
            if not result.called:
                result.callback(LegReply(status, reason))

        def send(carried: bytes | None) -> None:
            sent = defer.maybeDeferred(other.request, method, carried if offered else body, content_type,
                                       headers)
            sent.addCallbacks(carry_reply, result.errback)

        def carry_reply(reply: LegReply) -> None:
            if reply.content_type == SDP and reply.body and 200 <= reply.status < 300:
                kind = "answer" if offered else "offer"
                self._cross(other, leg, reply.body, kind,
                            lambda carried: result.callback(
                                LegReply(reply.status, reply.reason, carried or b"", reply.content_type)),
                            refused, ended=lambda: result.callback(LegReply(481, "Call Does Not Exist")))
            else:
                result.callback(reply)

        if offered:
            self._cross(leg, other, body, "offer", send, refused,
                        ended=lambda: result.callback(LegReply(481, "Call Does Not Exist")))
        else:
            send(None)
        return result

    def _relay_ack(self, leg: Any, sdp: bytes | None) -> None:
        """`leg`'s far end answered in its ACK the offer our 2xx carried: the answer
        goes (through the engine) into the ACK the other leg holds. An engine that
        refuses it ends the call (the held ACK goes bare before the BYE)."""
        other = self.other(leg)
        if other is None:
            return
        if sdp is None:
            other.acknowledge(None)
            return
        self._cross(leg, other, sdp, "answer", other.acknowledge, self._media_lost)

    def _relay_kept_ack(self, leg: Any, sdp: bytes | None) -> None:
        if self.leaving is not None:
            self._relay_ack(leg, sdp)

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

    # -- re-bridging -----------------------------------------------------------------------------

    def _cannot_rebridge(self, keep: Any, joining: Any, *rest: Any) -> defer.Deferred:
        status = 481 if self.state is B.ENDED else 491
        reason = "Call Does Not Exist" if status == 481 else "Request Pending"
        # The new leg was built for this call and is never dialled: let it go.
        joining.hangup(Cause(status, reason, "local"))
        return defer.fail(RebridgeFailed(status, reason))

    def _start_rebridge(self, keep: Any, joining: Any, by: str, module: str,
                        ring_timeout: float | None, on_progress: Any) -> defer.Deferred:
        if keep is not self.parties[0] and keep is not self.parties[1]:
            joining.hangup(Cause(500, "Not a party of the call", "local"))
            return defer.fail(ValueError(f"{keep!r} is not a party of {self!r}"))
        leaving = self.other(keep)
        self.state = B.REBRIDGING
        self.kept, self.leaving, self.joining = keep, leaving, joining
        if self._joined_sides is None:
            self._joined_sides = {}
        self._joined_sides[joining] = self.side_of(leaving)
        self._join_info = (by, module)
        self._on_join_progress = on_progress
        self._rebridged = d = defer.Deferred()
        joining.listener = self
        # The new party is offered what the kept party last offered or answered,
        # as a fresh, un-held session (its hold may have been for the old party).
        offer = keep.remote_sdp
        if self.session is not None:
            self._sides[joining] = chr(ord("a") + len(self._sides))
        self._join_timer = self.clock.callLater(
            self.ring_timeout if ring_timeout is None else ring_timeout, self._event, "ring_timeout"
        )
        self._cross(keep, joining, with_direction(offer) if offer else None, "offer",
                    lambda carried: self._dial_joining(joining, carried),
                    lambda failure: self._joining_refused(joining, failure))
        return d

    def _dial_joining(self, joining: Any, offer: bytes | None) -> None:
        if self.joining is not joining:
            return  # the re-bridge ended while the engine was asked
        joining.offer = offer
        joining.dial()
        _note_call_ids(self.record, joining)

    def _joining_refused(self, joining: Any, failure: Failure) -> None:
        """The engine refused the offer for the new leg: it is never dialled."""
        if self.joining is not joining:
            return
        status, reason = media_error(failure)
        joining.listener = None
        joining.hangup(Cause(status, reason, "local"))
        self._joining_failed(joining, status, reason)

    def _joining_progress(self, leg: Any, status: int, reason: str, sdp: bytes | None) -> None:
        if self._on_join_progress is not None and status > 100:
            self._on_join_progress(status, reason)

    def _joined(self, leg: Any, sdp: bytes | None) -> None:
        self._cancel_join_timer()
        keep, leaving = self.kept, self.leaving
        self.state = B.ANSWERED
        self.parties = [keep, leg]
        self.kept = self.leaving = self.joining = None
        by, module = self._join_info
        d, self._rebridged = self._rebridged, None
        record = self.record
        target = getattr(getattr(leg, "remote_party", None), "uri", None)
        target_text = (target.user or target.host) if target is not None else ""
        record.transfers.append(target_text)
        if module:
            # The new party takes the side of the one it replaced: a transfer by
            # the caller puts the target where the caller was.
            if self.side_of(leg) == "caller":
                record.inbound_module = module
            else:
                record.outbound_module = module
        # The transferor hears "200 OK" (NOTIFY) before its BYE.
        d.callback(leg)  # type: ignore[union-attr]
        if leaving is not None:
            leaving.listener = None
            leaving.hangup(TRANSFERRED)
        self.events.publish(CallTransferred(record, self.clock.seconds(), target_text, by, module))
        if self.session is None:
            self._offer_new_media(keep, leg, sdp)
            return
        # The new party's answer pairs it with the kept party in the engine; what
        # the kept party would now see decides whether it is re-INVITEd.
        self._cross(leg, keep, sdp, "answer", lambda seen: self._offer_new_media(keep, leg, seen),
                    lambda failure: self._media_lost(failure), carry=False)

    def _media_lost(self, failure: Failure) -> None:
        """The engine refused the answer that joins a re-bridged party: the parties
        cannot hear each other, so the call ends rather than stay up silent."""
        status, reason = media_error(failure)
        log.info("call {call}: media refused after a re-bridge: {error}", call=self.record.id,
                 error=failure.getErrorMessage())
        self.hangup(Cause(status, reason, "local"))

    def _offer_new_media(self, keep: Any, joined: Any, sdp: bytes | None) -> None:
        """Re-INVITE the kept party with the new party's SDP when the media changed,
        and tell the new party if the kept party's answer differs from what it got."""
        if sdp is None or same_media(sdp, self._sdp_to.get(keep)):
            return
        if self._continuing is None:
            self._continuing = set()
        self._continuing.add(keep)
        offer = self._carry_sdp(keep, sdp)

        def answered(reply: LegReply) -> None:
            if not 200 <= reply.status < 300 or reply.content_type != SDP or not reply.body:
                log.info("call {call}: re-INVITE after re-bridge answered {status}",
                         call=self.record.id, status=reply.status)
                return
            if self.state is not B.ANSWERED:
                return
            if self.session is None:
                if not same_media(reply.body, self._sdp_to.get(joined)):
                    joined.request("INVITE", self._carry_sdp(joined, reply.body), SDP)
                return

            def tell_joined(seen: bytes | None) -> None:
                if seen is not None and not same_media(seen, self._sdp_to.get(joined)):
                    joined.request("INVITE", self._carry_sdp(joined, seen), SDP)

            self._cross(keep, joined, reply.body, "answer", tell_joined, self._media_lost, carry=False)

        keep.request("INVITE", offer, SDP).addCallback(answered).addErrback(
            lambda f: log.failure("re-INVITE after re-bridge failed", f, call=self.record.id)
        )

    def _joining_failed(self, leg: Any, status: int, reason: str) -> None:
        self._cancel_join_timer()
        leg.listener = None
        keep, leaving = self.kept, self.leaving
        self.kept = self.leaving = self.joining = None
        d, self._rebridged = self._rebridged, None
        if leaving is None:
            # The party being replaced has gone: the kept one is alone.
            self.parties = [keep]
            keep.hangup(Cause(status, reason, "local"))
            self._end(200, f"transfer failed: {status} {reason}", "switch", cause_status=status)
        else:
            self.state = B.ANSWERED  # back to how the call was
            self.parties = [keep, leaving]
        self._drop_side(leg)
        d.errback(RebridgeFailed(status, reason))  # type: ignore[union-attr]

    def _joining_not_answered(self) -> None:
        self._join_timer = None
        joining = self.joining
        joining.listener = None
        joining.hangup(Cause(480, "No Answer", "local"))
        self._joining_failed(joining, 480, "No Answer")

    def _kept_ended(self, leg: Any, cause: Cause) -> None:
        joining, leaving = self.joining, self.leaving
        self._stop_rebridge()
        if leaving is not None:
            leaving.hangup(cause)
        joining.hangup(cause)
        self._end(200, cause.text or "Normal call clearing", self._hung_up_by(leg, cause),
                  cause_status=cause.status)

    def _leaving_ended(self, leg: Any, cause: Cause) -> None:
        """The party being replaced hung up (a transferor usually does once its
        REFER is accepted): the kept party waits for the new one alone."""
        leg.listener = None
        self.leaving = None

    def _relay_kept_request(self, leg: Any, method: str, body: bytes, content_type: str | None,
                            headers: Any) -> defer.Deferred:
        if self.leaving is None:
            return defer.succeed(LegReply(491 if method in ("INVITE", "UPDATE") else 481))
        return self._relay_request(leg, method, body, content_type, headers)

    def _hang_up_rebridging(self, cause: Cause) -> None:
        keep, leaving, joining = self.kept, self.leaving, self.joining
        self._stop_rebridge()
        for leg in (joining, keep, leaving):
            if leg is not None:
                leg.hangup(cause)
        self._end(200, cause.text, "switch", cause_status=cause.status)

    def _stop_rebridge(self) -> None:
        """The call ends while the new leg is dialled: it is CANCELled, so the
        re-bridge fails as its INVITE does, "487 Request Terminated". Status and
        reason go verbatim into a transferor's NOTIFY as a sipfrag status line
        (RFC 3515 §2.4.5), so the reason is that status's phrase, not the text of
        why the call ended (which made "SIP/2.0 487 Normal call clearing")."""
        self._cancel_join_timer()
        if self.joining is not None:
            self.joining.listener = None
        d, self._rebridged = self._rebridged, None
        if d is not None:
            d.errback(RebridgeFailed(487, "Request Terminated"))

    # -- media ---------------------------------------------------------------------------------------

    def _cross(self, from_leg: Any, to_leg: Any, sdp: bytes | None, kind: str,
               then: Callable[[bytes | None], Any], failed: Callable[[Failure], Any],
               ended: Callable[[], Any] | None = None, carry: bool = True) -> None:
        """Carry `sdp` (an "offer" or "answer" made by `from_leg`'s far end) to
        `to_leg` and call `then` with what `to_leg`'s far end is to see.

        Without a media session that happens now. With one, the engine rewrites it
        first, after every crossing asked before; `failed(failure)` hears the
        engine's refusal, and `ended()` (when given) a call that ended meanwhile.
        `carry=False` gives `then` the engine's SDP without noting it as sent."""
        session = self.session
        if session is None:
            if self._crossings is not None:
                # The call had media and it is closed: the call has ended.
                if ended is not None:
                    ended()
                return
            then(self._carry_sdp(to_leg, sdp) if carry else sdp)
            return

        def run(_: Any) -> Any:
            if self.state is B.ENDED or self.session is None:
                raise _CallEnded()
            if sdp is None:
                return None
            method = session.offer if kind == "offer" else session.answer
            return defer.maybeDeferred(method, self._side(from_leg), self._side(to_leg), sdp)

        def done(rewritten: bytes | None) -> None:
            if self.state is B.ENDED:
                if ended is not None:
                    ended()
                return
            then(self._carry_sdp(to_leg, rewritten) if carry else rewritten)

        def refused(failure: Failure) -> None:
            if failure.check(_CallEnded) or self.state is B.ENDED:
                if ended is not None:
                    ended()
                return
            failed(failure)

        step: defer.Deferred = defer.Deferred()
        step.addCallback(run).addCallbacks(done, refused).addErrback(
            lambda f: log.failure("call {call}: after a media crossing", f, call=self.record.id))
        # The queue waits for this step, whatever its outcome, before the next one.
        queue = self._crossings if self._crossings is not None else defer.succeed(None)

        def go(_: Any) -> defer.Deferred:
            step.callback(None)
            return step

        self._crossings = queue.addCallback(go)

    def _side(self, leg: Any) -> str:
        side = self._sides.get(leg)
        if side is None:
            side = self._sides[leg] = chr(ord("a") + len(self._sides))
        return side

    def _drop_side(self, leg: Any) -> None:
        """Release a leg that will not join (a failed re-bridge's): engines that can
        (the relay) give its ports back now rather than at the end of the call."""
        side = self._sides.get(leg)
        drop = getattr(self.session, "drop", None)
        if side is not None and drop is not None:
            drop(side).addErrback(lambda f: log.failure("dropping media side {side}", f, side=side))

    def _media_timeout(self) -> None:
        """No media for `rtp_timeout`: both legs are hung up (RFC 3326 cause 408)."""
        log.info("call {call}: no RTP, hanging up", call=self.record.id)
        self.hangup(RTP_TIMEOUT)

    def _refuse_for_media(self, failure: Failure) -> None:
        """The engine cannot carry the call's media before it is answered: the
        caller is refused (503 with Retry-After, 400 or 488), the callee hung up."""
        if self.state is not B.SETUP:
            if self.state is B.ANSWERED:
                self._media_lost(failure)
            return
        status, reason = media_error(failure)
        if status == 500:
            log.failure("call {call}: media engine failed", failure, call=self.record.id)
        else:
            log.info("call {call} refused by the media engine: {status} {error}", call=self.record.id,
                     status=status, error=failure.getErrorMessage())
        self.inbound.reject(status, reason, RETRY_AFTER if status == 503 else ())
        self.outbound.hangup(Cause(status, reason, "local"))
        self._end(status, f"{status} {reason}", "switch")

    def _close_media(self) -> None:
        session, self.session = self.session, None
        sides, self._sides = self._sides, {}
        if session is None:
            return
        try:
            media = dict(session.counters())
            # Which party each side stood for ("c" on takes the side it replaced).
            media["sides"] = {side: self.side_of(leg) for leg, side in sides.items()}
            self.record.media = media
        except Exception:
            log.failure("call {call}: media counters", call=self.record.id)
        defer.maybeDeferred(session.close).addErrback(
            lambda f: log.failure("closing the media of {call}", f, call=self.record.id))

    # -- helpers ---------------------------------------------------------------------------------

    def _carry_sdp(self, to_leg: Any, sdp: bytes | None) -> bytes | None:
        """The SDP a leg's far end sent, as `to_leg`'s far end should see it:
        unchanged while media flows directly between the endpoints, except that a
        party that has been re-bridged keeps seeing one session (its origin)."""
        if sdp is not None and self._continuing is not None and to_leg in self._continuing:
            sdp = continue_origin(sdp, self._sdp_to.get(to_leg))
        self._sdp_to[to_leg] = sdp
        return sdp

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


def _note_call_ids(record: CallRecord, leg: Any) -> None:
    """Add the SIP Call-IDs a just-dialled leg uses (each branch's, for a fork; none
    for a local leg) to the record, so that its messages can be found by call."""
    invite = getattr(leg, "invite", None)
    if invite is not None:
        if invite.call_id not in record.sip_call_ids:
            record.sip_call_ids.append(invite.call_id)
        return
    for branch in getattr(leg, "branches", ()):
        _note_call_ids(record, branch)
