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

from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.apps.answering import MediaLeg
from phpvoip.apps.base import shared_pacer
from phpvoip.apps.settings import port_range
from phpvoip.interfaces import NORMAL_CLEARING, Cause, IApplication, NotMine
from phpvoip.legs.local import LocalLeg, local_pair
from phpvoip.media.pacer import Pacer
from phpvoip.settings import Section
from phpvoip.sip.message import Request

__all__ = ["Echo", "EchoSettings", "parse_settings"]

log = Logger()

@dataclass(frozen=True)
class EchoSettings:
    number: str
    max_duration: float = 60.0
    answer_after: float = 0.0
    ports: tuple[int, int] = (31000, 31099)
    address: str = "127.0.0.1"
    weight: int = 80


def parse_settings(section: Section) -> EchoSettings:
    return EchoSettings(
        number=section.string("number"),
        max_duration=float(section.number("max_duration", 60.0, minimum=0.1)),
        answer_after=float(section.number("answer_after", 0.0, minimum=0)),
        ports=port_range(section, "ports", "31000-31099"),
        address=section.string("address", "127.0.0.1"),
        weight=section.integer("weight", 80),
    )


class _EchoCall(MediaLeg):
    """One call to the echo: its leg, its endpoint (`MediaLeg`) and its one timer."""

    __slots__ = ("timer",)

    def __init__(self, echo: Echo, leg: LocalLeg, call_id: str) -> None:
        super().__init__(echo, leg, call_id)
        self.timer: Any = None

    def _schedule(self, delay: float, action: Any) -> None:
        self._cancel()
        self.timer = self.app.reactor.callLater(delay, action)

    def _cancel(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    def ring(self, leg: LocalLeg) -> None:
        # Never answer or refuse from inside the dial that rang us: the bridge is mid-event.
        self._schedule(0, self.take)

    def take(self) -> None:
        """Refuse what cannot be echoed; otherwise answer (after a ring)."""
        self.timer = None
        if not self.open_media():
            return
        settings = self.app.settings
        if settings.answer_after > 0:
            self.leg.progress(180, "Ringing", None)
        self._schedule(settings.answer_after, self.answer)

    def answer(self) -> None:
        """Start echoing and answer; the call ends by itself after max_duration."""
        self.timer = None
        endpoint = self.endpoint
        assert endpoint is not None
        endpoint.on_audio = endpoint.send_audio
        endpoint.on_dtmf = self.digit
        self.send_answer()
        self._schedule(self.app.settings.max_duration, self.hangup)

    def hangup(self) -> None:
        self.timer = None
        log.debug("echo {name}: call {callID} reached max_duration", name=self.app.name,
                  callID=self.call_id)
        self.hang_up(NORMAL_CLEARING)

    def digit(self, digit: str, duration_ms: int) -> None:
        log.debug("echo {name}: call {callID} digit {digit} ({duration} ms)", name=self.app.name,
                  callID=self.call_id, digit=digit, duration=duration_ms)

    def finish(self, cause: Cause) -> None:
        """The call is over, whoever ended it: drop the timer, release the port."""
        self._cancel()
        super().finish(cause)
        self.app.calls.discard(self)


@implementer(IApplication)
class Echo:
    """Answers calls to `number` and sends back what it hears, for `max_duration` s.

    `reactor` (IReactorUDP and IReactorTime) defaults to the engine's clock, which
    is the reactor in a running switch; tests pass a fake. `pacer` is the 20 ms
    clock all its calls send on (one timer for every stream): by default the one
    every application of the process shares."""

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
            self.pacer = shared_pacer(self.reactor)

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
        # The engine side is the switch's outbound leg: it presents the caller (From)
        # and its far end is the echo (To), as a SIP leg to a phone would.
        engine_side, app_side = local_pair(invite.from_.copy(), invite.to.copy())
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
