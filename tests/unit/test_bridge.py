"""The bridge between two legs, driven through local leg pairs and a test clock."""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from phpvoip.bridge import Bridge, CallRecord, failure_for_caller
from phpvoip.interfaces import Cause, ICallLeg, ICallLegListener, LegReply, LegState
from phpvoip.legs.local import local_pair


class Recorder:
    """A listener that writes down every event (stands in for a phone)."""

    def __init__(self, reply: LegReply | None = None) -> None:
        self.events: list[tuple] = []
        self.reply = reply or LegReply(200, "OK")

    def leg_progress(self, leg, status, reason, sdp):
        self.events.append(("progress", status, sdp))

    def leg_answered(self, leg, sdp):
        self.events.append(("answered", sdp))

    def leg_failed(self, leg, status, reason):
        self.events.append(("failed", status, reason))

    def leg_acked(self, leg, sdp):
        self.events.append(("acked", sdp))

    def leg_ended(self, leg, cause):
        self.events.append(("ended", cause.text))

    def leg_request(self, leg, method, body, content_type, headers):
        self.events.append(("request", method, body))
        return defer.succeed(self.reply)


def make_call(ring_timeout=30.0, max_duration=3600.0):
    """caller phone <-> (inbound leg | bridge | outbound leg) <-> callee phone."""
    clock = Clock()
    inbound, caller_phone = local_pair()
    outbound, callee_phone = local_pair()
    caller, callee = Recorder(), Recorder()
    caller_phone.listener, callee_phone.listener = caller, callee
    rings: list = []
    callee_phone.on_invite = rings.append
    ended: list = []
    record = CallRecord("c1", "cid", "1001", "2005", clock.seconds())
    bridge = Bridge(record, inbound, outbound, clock, ring_timeout, max_duration, ended.append)
    # The caller dials: its offer arrives on the inbound leg.
    caller_phone.offer = b"offer"
    caller_phone.dial()
    bridge.start()
    return clock, bridge, caller_phone, callee_phone, caller, callee, rings, ended


def test_interfaces():
    """Local legs provide ICallLeg and the bridge ICallLegListener."""
    a, b = local_pair()
    assert verifyObject(ICallLeg, a) and verifyObject(ICallLeg, b)
    _, bridge, *_ = make_call()
    assert verifyObject(ICallLegListener, bridge)


def test_answer_and_callee_hangs_up():
    """Ringing and answer reach the caller with SDP; the callee's BYE ends both."""
    clock, bridge, caller_phone, callee_phone, caller, callee, rings, ended = make_call()
    assert rings == [callee_phone] and callee_phone.remote_sdp == b"offer"
    callee_phone.progress(180, "Ringing", None)
    clock.advance(5)
    callee_phone.answer(b"answer")
    assert caller.events == [("progress", 180, None), ("answered", b"answer")]
    clock.advance(60)
    callee_phone.hangup(Cause(None, "bye"))
    assert caller.events[-1] == ("ended", "bye")
    assert ended == [bridge]
    assert bridge.record.duration == 60 and bridge.record.hangup_by == "callee"
    assert bridge.legs_terminated


def test_caller_hangs_up_before_answer():
    """A caller giving up before answer stops the callee ringing."""
    clock, bridge, caller_phone, callee_phone, caller, callee, rings, ended = make_call()
    callee_phone.progress(180, "Ringing", None)
    caller_phone.hangup(Cause(487, "cancelled"))
    assert callee.events == [("failed", 487, "cancelled")]
    assert ended == [bridge] and bridge.record.hangup_by == "caller"
    assert callee_phone.state == LegState.TERMINATED


def test_busy_reaches_caller():
    """A 486 from the callee is the caller's final answer."""
    clock, bridge, caller_phone, callee_phone, caller, callee, rings, ended = make_call()
    callee_phone.reject(486, "Busy Here")
    assert caller.events == [("failed", 486, "Busy Here")]
    assert bridge.record.status == 486


def test_ring_timeout():
    """No answer within the ring timeout: the callee is hung up, the caller gets 480."""
    clock, bridge, caller_phone, callee_phone, caller, callee, rings, ended = make_call(ring_timeout=20)
    callee_phone.progress(180, "Ringing", None)
    clock.advance(19.9)
    assert not ended
    clock.advance(0.2)
    assert caller.events[-1] == ("failed", 480, "No Answer")
    assert callee.events[-1][0] == "failed"
    assert bridge.record.hangup_by == "switch"
    assert not clock.getDelayedCalls()


def test_maximum_length():
    """An answered call is cut at the maximum length."""
    clock, bridge, caller_phone, callee_phone, caller, callee, rings, ended = make_call(max_duration=100)
    callee_phone.answer(b"a")
    clock.advance(100)
    assert caller.events[-1] == ("ended", "Maximum call length reached")
    assert callee.events[-1] == ("ended", "Maximum call length reached")
    assert not clock.getDelayedCalls()


def test_reinvite_relayed_both_ways():
    """In-dialog requests and their answers cross the bridge."""
    clock, bridge, caller_phone, callee_phone, caller, callee, rings, ended = make_call()
    callee_phone.answer(b"a")
    callee.reply = LegReply(200, "OK", b"new-answer", "application/sdp")
    replies = []
    caller_phone.request("INVITE", b"new-offer", "application/sdp").addCallback(replies.append)
    assert callee.events[-1] == ("request", "INVITE", b"new-offer")
    assert replies[0].body == b"new-answer"
    callee_phone.request("INFO", b"x", "application/dtmf-relay").addCallback(replies.append)
    assert caller.events[-1] == ("request", "INFO", b"x")


def test_request_before_answer_is_refused():
    """A re-INVITE before the call is answered gets 491."""
    clock, bridge, caller_phone, callee_phone, *_ = make_call()
    replies = []
    bridge.leg_request(bridge.inbound, "INVITE", b"", None, ()).addCallback(replies.append)
    assert replies[0].status == 491


def test_failure_mapping():
    """Challenges, redirects and 503 from the far side are not passed on as they are."""
    assert failure_for_caller(407, "x")[0] == 403
    assert failure_for_caller(302, "x")[0] == 480
    assert failure_for_caller(503, "x")[0] == 500
    assert failure_for_caller(486, "Busy Here") == (486, "Busy Here")


def test_delayed_offer_between_local_legs():
    """A caller without an offer: the callee offers in its answer, the caller answers
    with its ACK (acknowledge) and the callee hears that answer (leg_acked)."""
    clock = Clock()
    inbound, caller_phone = local_pair()
    outbound, callee_phone = local_pair()
    caller, callee = Recorder(), Recorder()
    caller_phone.listener, callee_phone.listener = caller, callee
    record = CallRecord("c1", "cid", "1001", "2005", clock.seconds())
    bridge = Bridge(record, inbound, outbound, clock, 30.0, 3600.0, [].append)
    caller_phone.dial()
    bridge.start()
    assert callee_phone.remote_sdp is None
    callee_phone.answer(b"offer from callee")
    assert caller.events == [("answered", b"offer from callee")]
    caller_phone.acknowledge(b"answer from caller")
    assert callee.events == [("acked", b"answer from caller")]
    assert inbound.remote_sdp == b"answer from caller" and bridge.state.value == "answered"
