"""Originate (click to dial): the switch rings a first party and, once it answers,
connects it to a second one.

The switch's own end of the first call is the placeholder half of a local leg pair,
offering inactive audio; when the first party answers, the call is handed over with
an ordinary transfer (`Engine.transfer`), so the second party is reached through the
router like any other and the first is re-INVITEd with its media.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.python.failure import Failure

from phpvoip.bridge import TRANSFERRED, RebridgeFailed
from phpvoip.callrecord import CallRecord
from phpvoip.interfaces import CallRejected, Cause, LegReply, NotMine
from phpvoip.sip.headers import CSeq, NameAddr
from phpvoip.sip.ids import new_tag
from phpvoip.sip.message import Request
from phpvoip.sip.uri import URI

if TYPE_CHECKING:
    from phpvoip.engine import Engine

__all__ = ["OriginateFailed", "Originator", "originate_invite", "placeholder_offer"]


def originate_invite(from_user: str, to_user: str, domain: str, call_id: str) -> Request:
    """The INVITE the switch places to `from_user`; its From shows the phone whom
    it is about to be connected to."""
    invite = Request("INVITE", URI("sip", from_user, domain))
    invite.add("From", NameAddr(URI("sip", to_user, domain), "originate", {"tag": new_tag()}))
    invite.add("To", NameAddr(URI("sip", from_user, domain)))
    invite.add("Call-ID", call_id)
    invite.add("CSeq", CSeq(1, "INVITE"))
    return invite


class OriginateFailed(Exception):
    """An originated call did not connect: `status` and `reason` say why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status = status
        self.reason = reason


class Originator:
    """The switch's own end of an originated call (the placeholder half of a local
    pair): when the first party answers it hands that party over to the second one
    with a transfer; `done` fires with the call id, or fails with `OriginateFailed`."""

    def __init__(self, engine: Engine, record: CallRecord, leg: Any, to_user: str,
                 placed: defer.Deferred) -> None:
        self.engine = engine
        self.record = record
        self.to_user = to_user
        self.done: defer.Deferred = defer.Deferred()
        leg.listener = self
        placed.addErrback(self._not_placed)

    def _fail(self, status: int, reason: str) -> None:
        if not self.done.called:
            self.done.errback(OriginateFailed(status, reason))

    def _not_placed(self, failure: Failure) -> None:
        if failure.check(CallRejected):
            self._fail(failure.value.status, failure.value.reason or "Refused")
        elif failure.check(NotMine):
            self._fail(404, "Not Found")
        else:
            self._fail(500, failure.getErrorMessage())

    def leg_answered(self, leg: Any, sdp: bytes | None) -> None:
        # Not from inside the bridge's own answer handling: on the next turn.
        self.engine.clock.callLater(0, self._connect)

    def _connect(self) -> None:
        engine, call_id = self.engine, self.record.id
        bridge = engine.calls.get(call_id)
        if bridge is None:
            self._fail(487, "First party hung up")
            return
        d = engine.transfer(call_id, bridge.outbound, self.to_user, by="switch")

        def connected(_: Any) -> None:
            if not self.done.called:
                self.done.callback(call_id)

        def not_connected(failure: Failure) -> None:
            failure.trap(RebridgeFailed)
            engine.hangup(call_id, Cause(failure.value.status, failure.value.reason, "local"))
            self._fail(failure.value.status, failure.value.reason)

        d.addCallbacks(connected, not_connected)

    def leg_failed(self, leg: Any, status: int, reason: str) -> None:
        self._fail(status, reason)

    def leg_acked(self, leg: Any, sdp: bytes | None) -> None:
        pass  # the placeholder offers in the INVITE: no answer comes in an ACK

    def leg_ended(self, leg: Any, cause: Cause) -> None:
        if cause is not TRANSFERRED:  # handed over: the second party took its place
            self._fail(cause.status or 487, cause.text or "Ended")

    def leg_progress(self, leg: Any, status: int, reason: str, sdp: bytes | None) -> None:
        pass

    def leg_request(self, leg: Any, method: str, body: bytes, content_type: Any, headers: Any) -> Any:
        return defer.succeed(LegReply(488 if method == "INVITE" else 200))


def placeholder_offer(address: str) -> bytes:
    """What the switch offers the first party of an originated call until the
    second answers: audio, inactive (nothing flows); the party is re-INVITEd with
    the second party's SDP once it answers (RFC 3725 §5 in spirit)."""
    family = "IP6" if ":" in address else "IP4"
    lines = ["v=0", f"o=phpvoip 1 1 IN {family} {address}", "s=phpvoip", f"c=IN {family} {address}",
             "t=0 0", "m=audio 9 RTP/AVP 0 8", "a=inactive"]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
