"""The echo: a terminal application that plays callers back what they say.

A call to its number is answered with an `RtpEndpoint`'s answer to the caller's
offer; every audio packet heard is queued to be sent back (`on_audio` ->
`send_audio`), so a caller hears itself about one packet (20 ms) later. Digits
(RFC 4733 or SIP INFO) are logged at debug level. The echo hangs up after
`max_duration` seconds; the endpoint's port is released when the call ends either
way. It is the simplest check that a phone's audio reaches the switch and back.

A delayed offer (an INVITE without SDP) is answered with the endpoint's offer in
the 200; the caller's answer arrives with its ACK (`leg_acked`) and completes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.interfaces import NORMAL_CLEARING, Cause, IApplication, LegReply, MediaUnavailable, NotMine
from phpvoip.legs.local import LocalLeg, local_pair
from phpvoip.media.endpoint import RtpEndpoint
from phpvoip.media.pacer import Pacer
from phpvoip.settings import Section
from phpvoip.sip.message import Request
from phpvoip.sip.sdp import SdpError
from phpvoip.sip.sdp_offer import NotAcceptable

__all__ = ["Echo", "EchoSettings", "parse_settings"]

log = Logger()

SDP = "application/sdp"

@dataclass(frozen=True)
class EchoSettings:
    number: str
    max_duration: float = 60.0
    answer_after: float = 0.0
    ports: tuple[int, int] = (31000, 31099)
    address: str = "127.0.0.1"
    weight: int = 80


def _port_range(section: Section, name: str, default: str) -> tuple[int, int]:
    text = section.string(name, default)
    low, sep, high = text.partition("-")
    try:
        first, last = int(low), int(high if sep else low)
    except ValueError:
        raise section.error(name, f"must be a port range like {default!r}, not {text!r}") from None
    if not 1 <= first <= last <= 65535:
        raise section.error(name, f"must be a range of ports 1-65535, low first, not {text!r}")
    if first == last and first % 2:
        raise section.error(name, f"needs an even port (RTP, RFC 3550 §11), not {text!r}")
    return first, last


def parse_settings(section: Section) -> EchoSettings:
    return EchoSettings(
        number=section.string("number"),
        max_duration=float(section.number("max_duration", 60.0, minimum=0.1)),
        answer_after=float(section.number("answer_after", 0.0, minimum=0)),
        ports=_port_range(section, "ports", "31000-31099"),
        address=section.string("address", "127.0.0.1"),
        weight=section.integer("weight", 80),
    )


class _EchoCall:
    """One call to the echo: its leg, its endpoint and its one timer."""

    __slots__ = ("echo", "leg", "call_id", "endpoint", "timer", "answer_sdp")

    def __init__(self, echo: Echo, leg: LocalLeg, call_id: str) -> None:
        self.echo = echo
        self.leg = leg
        self.call_id = call_id
        self.endpoint: RtpEndpoint | None = None
        self.timer: Any = None
        self.answer_sdp = b""
        leg.listener = self

    def _schedule(self, delay: float, action: Any) -> None:
        self._cancel()
        self.timer = self.echo.reactor.callLater(delay, action)

    def _cancel(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    # -- the incoming call -------------------------------------------------------------

    def ring(self, leg: LocalLeg) -> None:
        # Never answer or refuse from inside the dial that rang us: the bridge is mid-event.
        self._schedule(0, self.take)

    def take(self) -> None:
        """Refuse what cannot be echoed; otherwise answer (after a ring)."""
        self.timer = None
        leg, settings = self.leg, self.echo.settings
        try:
            endpoint = RtpEndpoint(self.echo.reactor, settings.address, settings.ports,
                                   pacer=self.echo.pacer, send_silence=False)
        except MediaUnavailable as e:
            log.warn("echo {name}: call {callID} refused: {reason}", name=self.echo.name,
                     callID=self.call_id, reason=str(e))
            self._refuse(503, "No media port")
            return
        self.endpoint = endpoint
        try:
            # Negotiated now, so a bad offer is refused before ringing; nothing is
            # sent (no silence) and what arrives is not echoed until the answer.
            # No offer (RFC 3264 §5 delayed offer): ours goes in the 200 and the
            # caller's answer comes with its ACK (leg_acked).
            self.answer_sdp = endpoint.answer(leg.remote_sdp) if leg.remote_sdp else endpoint.offer()
        except (NotAcceptable, SdpError) as e:
            self._refuse(e.status, e.reason)
            return
        if settings.answer_after > 0:
            leg.progress(180, "Ringing", None)
        self._schedule(settings.answer_after, self.answer)

    def _refuse(self, status: int, reason: str) -> None:
        log.debug("echo {name}: call {callID} refused {status} {reason}", name=self.echo.name,
                  callID=self.call_id, status=status, reason=reason)
        self.leg.reject(status, reason)
        self.finish()

    def answer(self) -> None:
        """Start echoing and answer; the call ends by itself after max_duration."""
        self.timer = None
        endpoint = self.endpoint
        assert endpoint is not None
        endpoint.send_silence = True  # keeps a NAT binding open while the caller is quiet
        endpoint.on_audio = endpoint.send_audio
        endpoint.on_dtmf = self.digit
        self.leg.answer(self.answer_sdp)
        self._schedule(self.echo.settings.max_duration, self.hangup)

    def hangup(self) -> None:
        self.timer = None
        log.debug("echo {name}: call {callID} reached max_duration", name=self.echo.name,
                  callID=self.call_id)
        self.leg.hangup(NORMAL_CLEARING)
        self.finish()

    def digit(self, digit: str, duration_ms: int) -> None:
        log.debug("echo {name}: call {callID} digit {digit} ({duration} ms)", name=self.echo.name,
                  callID=self.call_id, digit=digit, duration=duration_ms)

    def finish(self) -> None:
        """The call is over, whoever ended it: drop the timer, release the port."""
        self._cancel()
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            endpoint.close()
        self.echo.calls.discard(self)

    # -- what the caller's side does (ICallLegListener) -----------------------------------

    def leg_progress(self, leg: LocalLeg, status: int, reason: str, sdp: bytes | None) -> None:
        pass

    def leg_answered(self, leg: LocalLeg, sdp: bytes | None) -> None:
        pass  # the echo never dials

    def leg_failed(self, leg: LocalLeg, status: int, reason: str) -> None:
        self.finish()  # the caller gave up before the answer

    def leg_acked(self, leg: LocalLeg, sdp: bytes | None) -> None:
        """The caller's answer to the offer in our 200 (an INVITE or re-INVITE
        without SDP): the endpoint sends to where it says. An ACK without an
        answer, or one that agrees on nothing we can send, ends the call."""
        endpoint = self.endpoint
        if endpoint is None:
            return
        try:
            if sdp is None:
                raise NotAcceptable("no answer in the ACK")
            endpoint.accept_answer(sdp)
        except (NotAcceptable, SdpError, ValueError) as e:
            log.info("echo {name}: call {callID}: answer in the ACK refused: {error}", name=self.echo.name,
                     callID=self.call_id, error=str(e))
            self.leg.hangup(Cause(488, "Not Acceptable Here", "local"))
            self.finish()

    def leg_ended(self, leg: LocalLeg, cause: Any) -> None:
        self.finish()

    def leg_request(self, leg: LocalLeg, method: str, body: bytes, content_type: Any,
                    headers: Any) -> defer.Deferred:
        return defer.succeed(self._in_dialog(method, body, content_type))

    def _in_dialog(self, method: str, body: bytes, content_type: Any) -> LegReply:
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


@implementer(IApplication)
class Echo:
    """Answers calls to `number` and sends back what it hears, for `max_duration` s.

    `reactor` (IReactorUDP and IReactorTime) defaults to the engine's clock, which
    is the reactor in a running switch; tests pass a fake. `pacer` is the 20 ms
    clock all its calls send on (one timer for every stream); pass the process's
    shared one, else the echo makes its own at start."""

    def __init__(self, name: str, settings: EchoSettings, reactor: Any = None,
                 pacer: Pacer | None = None) -> None:
        self.name = name
        self.settings = settings
        self.number = settings.number
        self.weight = settings.weight
        self.engine: Any = None
        self.reactor: Any = reactor
        self.pacer = pacer
        self.calls: set[_EchoCall] = set()

    def start(self, engine: Any) -> None:
        self.engine = engine
        if self.reactor is None:
            self.reactor = engine.clock
        if self.pacer is None:
            self.pacer = Pacer(self.reactor)

    def stop(self) -> None:
        """Nothing runs between calls; calls in progress end by themselves (or the
        engine has hung them up at shutdown)."""

    def reconfigure(self, settings: EchoSettings) -> bool:
        """Apply new settings in place (a reload): calls in progress keep their
        endpoint and their hang-up time; new calls get the new settings."""
        self.settings, self.number, self.weight = settings, settings.number, settings.weight
        return True

    def request(self, request: Any, transaction: Any, source: Any) -> bool:
        raise NotMine()

    def callout(self, invite: Request, call: Any) -> LocalLeg:
        if invite.to.uri.user != self.number:
            raise NotMine()
        engine_side, app_side = local_pair(invite.to.copy(), invite.from_.copy())
        echo_call = _EchoCall(self, app_side, invite.call_id)
        app_side.on_invite = echo_call.ring
        self.calls.add(echo_call)
        return engine_side

    def explain_callout(self, invite: Request) -> str | None:
        """For the manhole's route(): the echo takes calls to its number."""
        if invite.to.uri.user != self.number:
            return None
        return (f"the echo's number {self.number}: plays the caller back, "
                f"hangs up after {self.settings.max_duration:g}s")

    def callin(self, call: Any) -> Any:
        raise NotMine()  # the echo places no calls
