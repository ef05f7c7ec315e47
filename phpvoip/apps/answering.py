"""The application's end of a local leg pair with an RTP endpoint behind it.

Every terminal application that speaks (the echo, `phpvoip.apps.base.AppCall`)
does the same SIP-side work, so it lives here once: bind an `RtpEndpoint`
(refusing 503 when no port is free), negotiate the caller's offer before
ringing (488/400 for SDP that cannot be used), answer with the endpoint's SDP, or
with its offer when the INVITE had none (RFC 3264 §5 delayed offer: the caller's
answer comes with the ACK, `leg_acked`), place a call with the endpoint's offer
(`dial`), and answer in-dialog re-INVITE / UPDATE / INFO from the endpoint.

Subclasses decide *when* to answer and what to do with the media, and hear the
end of the call once through `finish(cause)`.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from phpvoip.interfaces import Cause, LegReply, MediaUnavailable
from phpvoip.media.endpoint import RtpEndpoint
from phpvoip.sip.sdp import SdpError
from phpvoip.sip.sdp_offer import NotAcceptable

__all__ = ["MediaLeg", "SDP"]

log = Logger()

SDP = "application/sdp"


class MediaLeg:
    """Listens to the app side `leg` of a local pair and owns its endpoint.

    `app` is the owning application (for `name`, `reactor`, `pacer` and the
    `settings` with `address` and `ports`). Subclasses override `media_ready`
    (the caller's answer has been taken: audio flows), `connected` (an outgoing
    call was answered) and `finish` (the call is over, called once)."""

    __slots__ = ("app", "leg", "call_id", "endpoint", "answer_sdp", "delayed", "done")

    def __init__(self, app: Any, leg: Any, call_id: str) -> None:
        self.app = app
        self.leg = leg
        self.call_id = call_id
        self.endpoint: RtpEndpoint | None = None
        self.answer_sdp = b""
        self.delayed = False  # our 200 carries the offer; the answer comes with the ACK
        self.done = False
        leg.listener = self

    # -- setting up -------------------------------------------------------------------

    def open_media(self, incoming: bool = True) -> bool:
        """Bind the endpoint; for an incoming call also negotiate the caller's offer
        now, so a bad one is refused before ringing. False when refused (the leg
        has been rejected and `finish` called)."""
        app, settings = self.app, self.app.settings
        try:
            endpoint = RtpEndpoint(app.reactor, settings.address, settings.ports, pacer=app.pacer,
                                   send_silence=False)
        except MediaUnavailable as e:
            log.warn("{kind} {name}: call {callID} refused: {reason}", kind=type(app).__name__.lower(),
                     name=app.name, callID=self.call_id, reason=str(e))
            if incoming:
                self.refuse(503, "No media port")
            return False
        self.endpoint = endpoint
        if not incoming:
            return True
        offer = self.leg.remote_sdp
        try:
            # Nothing is sent (no silence) and nothing heard is used before the answer.
            self.delayed = not offer
            self.answer_sdp = endpoint.answer(offer) if offer else endpoint.offer()
        except (NotAcceptable, SdpError) as e:
            self.refuse(e.status, e.reason)
            return False
        return True

    def refuse(self, status: int, reason: str) -> None:
        log.debug("{name}: call {callID} refused {status} {reason}", name=self.app.name,
                  callID=self.call_id, status=status, reason=reason)
        self.leg.reject(status, reason)
        self.finish(Cause(status, reason, "local"))

    def send_answer(self) -> None:
        """Answer with the endpoint's SDP; media flows at once unless our 200 holds
        the offer (then from the ACK's answer on)."""
        endpoint = self.endpoint
        assert endpoint is not None
        endpoint.send_silence = True  # keeps a NAT binding open while nothing plays
        self.leg.answer(self.answer_sdp)
        if not self.delayed and not self.done:
            self.media_ready()

    def dial(self) -> None:
        """Place the call: the app side rings the engine side with our offer."""
        endpoint = self.endpoint
        assert endpoint is not None
        self.delayed = False
        self.leg.offer = endpoint.offer()
        self.leg.dial()

    def close_media(self) -> None:
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            endpoint.close()

    # -- hooks ---------------------------------------------------------------------------

    def media_ready(self) -> None:
        """The call is answered and the far end's SDP taken."""

    def connected(self) -> None:
        """An outgoing call (`dial`) was answered and its SDP taken."""

    def finish(self, cause: Cause) -> None:
        """The call is over, whoever ended it. Subclasses call this one too."""
        self.done = True
        self.close_media()

    # -- what the engine side does (ICallLegListener) ------------------------------------

    def leg_progress(self, leg: Any, status: int, reason: str, sdp: bytes | None) -> None:
        pass

    def leg_answered(self, leg: Any, sdp: bytes | None) -> None:
        """Our outgoing call was answered: the answer to our offer says where to send."""
        endpoint = self.endpoint
        if endpoint is None or not self._take_answer(sdp, "answer"):
            return
        endpoint.send_silence = True
        self.connected()

    def leg_failed(self, leg: Any, status: int, reason: str) -> None:
        self.finish(Cause(status, reason, "remote"))  # the caller gave up, or ours was refused

    def leg_acked(self, leg: Any, sdp: bytes | None) -> None:
        """The answer to the offer in our 200 (INVITE or re-INVITE without SDP). An
        ACK without one, or one we cannot send to, ends the call."""
        if self.endpoint is None or not self._take_answer(sdp, "answer in the ACK"):
            return
        if self.delayed:
            self.delayed = False
            self.media_ready()

    def _take_answer(self, sdp: bytes | None, what: str) -> bool:
        """Give the endpoint the far end's answer to our offer; without one, or one
        it cannot send to, the call ends (488) and this says False."""
        assert self.endpoint is not None
        try:
            if sdp is None:
                raise NotAcceptable(f"no {what}")
            self.endpoint.accept_answer(sdp)
        except (NotAcceptable, SdpError, ValueError) as e:
            log.info("{name}: call {callID}: {what} refused: {error}", name=self.app.name,
                     callID=self.call_id, what=what, error=str(e))
            self.hang_up(Cause(488, "Not Acceptable Here", "local"))
            return False
        return True

    def leg_ended(self, leg: Any, cause: Cause) -> None:
        self.finish(cause)

    def leg_request(self, leg: Any, method: str, body: bytes, content_type: Any,
                    headers: Any) -> defer.Deferred:
        return defer.succeed(self.in_dialog(method, body, content_type))

    def hang_up(self, cause: Cause) -> None:
        self.leg.hangup(cause)
        if not self.done:
            self.finish(cause)

    def in_dialog(self, method: str, body: bytes, content_type: Any) -> LegReply:
        """Answer a request inside the call from the endpoint."""
        endpoint = self.endpoint
        if endpoint is None:
            return LegReply(481, "Call/Transaction Does Not Exist")
        if method == "INFO":
            endpoint.info(str(content_type or ""), body)
            return LegReply(200, "OK")
        if method not in ("INVITE", "UPDATE"):
            return LegReply(200, "OK")
        if body and (content_type or SDP).split(";")[0].strip().lower() == SDP:
            # Hold, unhold, a new address: the endpoint answers and follows.
            try:
                return LegReply(200, "OK", endpoint.answer(body), SDP)
            except (NotAcceptable, SdpError) as e:
                return LegReply(e.status, e.reason)
        if method == "INVITE":
            # An offerless re-INVITE wants an offer in our 200 (RFC 3264 §5); its
            # answer comes with the ACK (leg_acked).
            return LegReply(200, "OK", endpoint.offer(), SDP)
        return LegReply(200, "OK")
