"""The robot: a terminal application that answers calls and hangs up by itself.

Like the seed's robot module it proves the local-leg contract in both directions:
calls to its number ring, are answered after `answer_after` seconds and hung up after
`hangup_after` more; and, when `dial` is configured, it places calls from its number
through the engine every `every` seconds. It has no media: its SDP answer declines
every stream (RFC 3264 §6), so the call connects with no RTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.interfaces import NORMAL_CLEARING, IApplication, LegReply, NotMine
from phpvoip.legs.local import LocalLeg, local_pair
from phpvoip.settings import Section
from phpvoip.sip.headers import NameAddr
from phpvoip.sip.ids import new_call_id, new_tag
from phpvoip.sip.message import Request
from phpvoip.sip.sdp import rejecting_answer
from phpvoip.sip.uri import URI

__all__ = ["Robot", "RobotSettings"]

log = Logger()


@dataclass(frozen=True)
class RobotSettings:
    number: str
    answer_after: float = 1.0
    hangup_after: float = 30.0
    ring: bool = True
    dial_to: str | None = None
    dial_every: float = 60.0
    weight: int = 80


def parse_settings(section: Section) -> RobotSettings:
    dial = section.section("dial", {})
    settings = RobotSettings(
        number=section.string("number"),
        answer_after=float(section.number("answer_after", 1.0, minimum=0)),
        hangup_after=float(section.number("hangup_after", 30.0, minimum=0)),
        ring=section.boolean("ring", True),
        dial_to=dial.string("to", None),
        dial_every=float(dial.number("every", 60.0, minimum=1)),
        weight=section.integer("weight", 80),
    )
    dial.check_unknown()
    return settings




class _RobotCall:
    """One call the robot takes part in; its timers die with it."""

    def __init__(self, robot: Robot, leg: LocalLeg) -> None:
        self.robot = robot
        self.leg = leg
        self.timer: Any = None
        leg.listener = self

    def schedule(self, delay: float, action: Any) -> None:
        self.cancel()
        self.timer = self.robot.engine.clock.callLater(delay, action)

    def cancel(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    # An incoming call: ring, answer, then hang up.
    def ring(self, leg: LocalLeg) -> None:
        if self.robot.settings.ring:
            leg.progress(180, "Ringing", None)
        self.schedule(self.robot.settings.answer_after, self.answer)

    def answer(self) -> None:
        address = self.robot.engine.local_address("udp").host
        self.leg.answer(rejecting_answer(self.leg.remote_sdp, address))
        self.schedule(self.robot.settings.hangup_after, self.hangup)

    def hangup(self) -> None:
        self.timer = None
        self.leg.hangup(NORMAL_CLEARING)
        self.robot.finished(self)

    # What the other side does (ICallLegListener).
    def leg_progress(self, leg: LocalLeg, status: int, reason: str, sdp: bytes | None) -> None:
        pass

    def leg_answered(self, leg: LocalLeg, sdp: bytes | None) -> None:
        if sdp is not None:
            # The robot dialled without an offer: the 2xx offers, our ACK answers
            # (RFC 3264 §5), refusing every stream as it does when called.
            address = self.robot.engine.local_address("udp").host
            leg.acknowledge(rejecting_answer(sdp, address))
        self.schedule(self.robot.settings.hangup_after, self.hangup)

    def leg_failed(self, leg: LocalLeg, status: int, reason: str) -> None:
        self.cancel()
        self.robot.finished(self)

    def leg_acked(self, leg: LocalLeg, sdp: bytes | None) -> None:
        pass  # the robot's answer refuses every stream: an answer to it changes nothing

    def leg_ended(self, leg: LocalLeg, cause: Any) -> None:
        self.cancel()
        self.robot.finished(self)

    def leg_request(self, leg: LocalLeg, method: str, body: bytes, content_type: Any, headers: Any) -> Any:
        if method in ("INVITE", "UPDATE") and body:
            address = self.robot.engine.local_address("udp").host
            answer = rejecting_answer(body, address) or b""
            return defer.succeed(LegReply(200, "OK", answer, "application/sdp"))
        return defer.succeed(LegReply(200, "OK"))


@implementer(IApplication)
class Robot:
    """Answers calls to `number`; optionally dials `dial_to` every `dial_every` s."""

    def __init__(self, name: str, settings: RobotSettings) -> None:
        self.name = name
        self.settings = settings
        self.number = settings.number
        self.weight = settings.weight
        self.engine: Any = None
        self.calls: set[_RobotCall] = set()
        self._outgoing: dict[str, LocalLeg] = {}  # Call-ID -> engine side, until callin
        self._dialer: Any = None

    def start(self, engine: Any) -> None:
        self.engine = engine
        if self.settings.dial_to:
            self._dialer = engine.clock.callLater(self.settings.dial_every, self._dial_tick)

    def stop(self) -> None:
        """Stop dialing. Calls in progress run on to their own hang-up (a robot
        removed by a reload drops no call); at shutdown the engine has hung them up
        already."""
        if self._dialer is not None and self._dialer.active():
            self._dialer.cancel()
        self._dialer = None

    def reconfigure(self, settings: RobotSettings) -> bool:
        """Apply new settings in place (a reload): calls in progress keep their
        timers; the dialer restarts when what or how often it dials changed."""
        old = self.settings
        self.settings, self.number, self.weight = settings, settings.number, settings.weight
        dialing = (settings.dial_to, settings.dial_every)
        if self.engine is not None and (old.dial_to, old.dial_every) != dialing:
            if self._dialer is not None and self._dialer.active():
                self._dialer.cancel()
            self._dialer = None
            if settings.dial_to:
                self._dialer = self.engine.clock.callLater(settings.dial_every, self._dial_tick)
        return True

    def request(self, request: Any, transaction: Any, source: Any) -> bool:
        raise NotMine()

    # -- receiving a call ----------------------------------------------------------

    def callout(self, invite: Request, call: Any) -> LocalLeg:
        if invite.to.uri.user != self.number:
            raise NotMine()
        # The engine side is the switch's outbound leg: it presents the caller (From)
        # and its far end is the robot (To), as a SIP leg to a phone would.
        engine_side, app_side = local_pair(invite.from_.copy(), invite.to.copy())
        robot_call = _RobotCall(self, app_side)
        app_side.on_invite = robot_call.ring
        self.calls.add(robot_call)
        return engine_side

    def explain_callout(self, invite: Request) -> str | None:
        """For the manhole's route(): the robot takes calls to its number."""
        if invite.to.uri.user != self.number:
            return None
        return (f"the robot's number {self.number}: answers after {self.settings.answer_after:g}s, "
                f"hangs up after {self.settings.hangup_after:g}s")

    # -- placing a call ------------------------------------------------------------

    def dial(self, to: str) -> defer.Deferred:
        """Place a call from the robot's number to `to` through the engine."""
        domain = self.engine.domain
        call_id = new_call_id(domain)
        me = NameAddr(URI("sip", self.number, domain), None, {"tag": new_tag()})
        invite = Request("INVITE", URI("sip", to, domain))
        invite.add("From", me)
        invite.add("To", NameAddr(URI("sip", to, domain)))
        invite.add("Call-ID", call_id)
        invite.add("CSeq", "1 INVITE")
        # The engine side is the caller's leg: it presents the callee and its far
        # end is the robot.
        engine_side, app_side = local_pair(invite.to.copy(), me)
        engine_side.remote_sdp = None  # the robot offers no media
        self.calls.add(_RobotCall(self, app_side))
        self._outgoing[call_id] = engine_side

        def not_placed(failure: Any) -> Any:
            # The engine never asked us for the leg (or gave up): forget it.
            if self._outgoing.pop(call_id, None) is not None:
                engine_side.reject(500, "Not placed")
            return failure

        return self.engine.place_call(invite).addErrback(not_placed)

    def callin(self, call: Any) -> LocalLeg:
        invite = call.invite
        if call.source is not None or invite.from_.uri.user != self.number:
            raise NotMine()
        leg = self._outgoing.pop(invite.call_id, None)
        if leg is None:
            raise NotMine()
        leg.peer.dial()  # the robot's side dials: the engine's side is now an incoming call
        return leg

    def _dial_tick(self) -> None:
        self._dialer = self.engine.clock.callLater(self.settings.dial_every, self._dial_tick)
        d = self.dial(self.settings.dial_to)
        d.addErrback(lambda f: log.failure("robot {name} could not dial", f, name=self.name))

    def finished(self, call: _RobotCall) -> None:
        self.calls.discard(call)
