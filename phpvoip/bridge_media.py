"""How a bridge carries SDP between its legs: `MediaCrossings`, part of
`phpvoip.bridge.Bridge`.

Without a media engine (``media: direct``) an SDP is handed on at once, unchanged
but for the origin a re-bridged party must keep seeing. With one, the call has a
media session whose sides are its legs ("a" the caller, "b" the callee, "c", "d"...
legs joined by re-bridges); each crossing is an offer or answer handed to the engine,
in the order the legs reported them, and what the leg does next runs when the
engine's Deferred fires. A refusal fails the call before answer (503, 400 or 488)
or the request that carried the SDP after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from phpvoip.bridge_state import B
from phpvoip.interfaces import Cause, LegReply, MediaUnavailable
from phpvoip.sip.sdp import SdpError, continue_origin
from phpvoip.sip.sdp_offer import NotAcceptable

__all__ = ["RETRY_AFTER", "RTP_TIMEOUT", "MediaCrossings", "media_error"]

log = Logger()

SDP = "application/sdp"
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


class MediaCrossings:
    """The bridge's media: its session, the sides of its legs, the ordered crossings.
    Mixed into `Bridge`, whose attributes (state, legs, record, session...) it uses."""

    state: Any
    record: Any
    inbound: Any
    outbound: Any
    session: Any
    _sides: dict[Any, str]
    _crossings: defer.Deferred | None
    _continuing: set[Any] | None
    _sdp_to: dict[Any, bytes | None]

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

    def _media_lost(self, failure: Failure) -> None:
        """The engine refused the answer that joins a re-bridged party: the parties
        cannot hear each other, so the call ends rather than stay up silent."""
        status, reason = media_error(failure)
        log.info("call {call}: media refused after a re-bridge: {error}", call=self.record.id,
                 error=failure.getErrorMessage())
        self.hangup(Cause(status, reason, "local"))

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

    def _carry_sdp(self, to_leg: Any, sdp: bytes | None) -> bytes | None:
        """The SDP a leg's far end sent, as `to_leg`'s far end should see it:
        unchanged while media flows directly between the endpoints, except that a
        party that has been re-bridged keeps seeing one session (its origin)."""
        if sdp is not None and self._continuing is not None and to_leg in self._continuing:
            sdp = continue_origin(sdp, self._sdp_to.get(to_leg))
        self._sdp_to[to_leg] = sdp
        return sdp
