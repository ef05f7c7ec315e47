"""Re-bridging: keep one party, replace the other, under a test clock with local legs."""

from __future__ import annotations

from twisted.internet.task import Clock
from zope.interface import implementer

from phpvoip.bridge import Bridge, BridgeState, RebridgeFailed
from phpvoip.callrecord import CallRecord
from phpvoip.events import CallEvents, CallTransferred
from phpvoip.interfaces import Cause, ICallObserver, LegReply, LegState
from phpvoip.legs.local import local_pair
from tests.unit.test_bridge import Recorder

SDP_A = b"v=0\r\no=alice 10 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n"
SDP_B = b"v=0\r\no=bob 20 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nm=audio 5000 RTP/AVP 0\r\n"
SDP_C = b"v=0\r\no=carol 30 7 IN IP4 10.0.0.3\r\ns=-\r\nc=IN IP4 10.0.0.3\r\nm=audio 6000 RTP/AVP 0\r\n"


@implementer(ICallObserver)
class Events:
    def __init__(self) -> None:
        self.seen: list = []

    def call_event(self, event):
        self.seen.append(event)


class Party:
    """A phone on the far side of a local pair: its leg, what it heard, its replies."""

    def __init__(self, sdp: bytes | None = None) -> None:
        self.bridge_side, self.phone = local_pair()
        self.heard = Recorder()
        self.phone.listener = self.heard
        self.rung: list = []
        self.phone.on_invite = self.rung.append
        self.sdp = sdp

    def answer(self) -> None:
        self.phone.answer(self.sdp)


def answered_call(clock: Clock, ring_timeout: float = 30.0):
    """A (caller) <-> B (callee), answered; returns the bridge, parties and events."""
    a, b = Party(SDP_A), Party(SDP_B)
    events = CallEvents()
    observer = Events()
    events.add(observer)
    record = CallRecord("call-1", "cid", "1001", "2005", clock.seconds())
    ended: list = []
    bridge = Bridge(record, a.bridge_side, b.bridge_side, clock, ring_timeout, 3600.0, ended.append, events)
    a.phone.offer = SDP_A
    a.phone.dial()
    bridge.start()
    b.answer()
    assert bridge.state is BridgeState.ANSWERED and a.heard.events == [("answered", SDP_B)]
    return bridge, a, b, observer, ended


def test_join_reoffers_the_kept_party():
    """The new party is dialled with the kept party's SDP; on answer the leaving party
    is hung up and the kept one re-INVITEd with the new SDP, as one session."""
    clock = Clock()
    bridge, a, b, observer, ended = answered_call(clock)
    c = Party(SDP_C)
    a.heard.reply = LegReply(200, "OK", SDP_A, "application/sdp")
    joined: list = []
    bridge.rebridge(a.bridge_side, c.bridge_side, by="callee", module="trunk-c").addCallback(joined.append)
    assert bridge.state is BridgeState.REBRIDGING
    assert c.rung == [c.phone] and c.phone.remote_sdp == SDP_A
    assert b.heard.events == []  # nothing changes for B until C answers
    c.answer()
    assert joined == [c.bridge_side]
    assert b.heard.events == [("ended", "Call transferred")]
    [reinvite] = [e for e in a.heard.events if e[0] == "request"]
    assert reinvite[1] == "INVITE" and b"m=audio 6000" in reinvite[2]
    # A keeps seeing the session B's answer started (o=bob 20), one version on.
    assert b"o=bob 20 2 IN IP4 10.0.0.2" in reinvite[2]
    assert bridge.parties == [a.bridge_side, c.bridge_side] and bridge.state is BridgeState.ANSWERED
    [transferred] = [e for e in observer.seen if isinstance(e, CallTransferred)]
    assert (transferred.by, transferred.outbound) == ("callee", "trunk-c")
    assert bridge.record.transfers == [transferred.target] and bridge.record.outbound_module == "trunk-c"
    assert bridge.side_of(c.bridge_side) == "callee"
    # Later offers from C reach A as that same session, next version again.
    c.phone.request("INVITE", SDP_C.replace(b"6000", b"6002"), "application/sdp")
    assert b"o=bob 20 3" in a.heard.events[-1][2]
    c.phone.hangup(Cause(None, "bye"))
    assert a.heard.events[-1] == ("ended", "bye") and ended == [bridge]
    assert bridge.record.hangup_by == "callee" and bridge.record.status == 200


def test_held_party_is_offered_unheld():
    """A transferee held by the transferor is offered to the new party as sendrecv."""
    clock = Clock()
    bridge, a, b, observer, ended = answered_call(clock)
    a.bridge_side.remote_sdp = SDP_A + b"a=recvonly\r\n"
    c = Party(SDP_C)
    bridge.rebridge(a.bridge_side, c.bridge_side)
    assert c.phone.remote_sdp.endswith(b"a=sendrecv\r\n")


def test_no_reinvite_when_media_is_the_same():
    """A new party with the media the kept party already has causes no re-INVITE."""
    clock = Clock()
    bridge, a, b, observer, ended = answered_call(clock)
    c = Party(SDP_B.replace(b"o=bob 20 1", b"o=relay 1 1"))
    bridge.rebridge(a.bridge_side, c.bridge_side)
    c.answer()
    assert [e for e in a.heard.events if e[0] == "request"] == []
    assert b.heard.events == [("ended", "Call transferred")]


def test_failed_join_leaves_the_call_as_it_was():
    """When the new party refuses, the parties stay joined and talk as before."""
    clock = Clock()
    bridge, a, b, observer, ended = answered_call(clock)
    c = Party(SDP_C)
    failures: list = []
    bridge.rebridge(b.bridge_side, c.bridge_side).addErrback(lambda f: failures.append(f.value))
    c.phone.reject(486, "Busy Here")
    [failure] = failures
    assert isinstance(failure, RebridgeFailed) and (failure.status, failure.reason) == (486, "Busy Here")
    assert bridge.state is BridgeState.ANSWERED and bridge.parties == [b.bridge_side, a.bridge_side]
    a.phone.request("INFO", b"1", "application/dtmf")
    assert b.heard.events[-1] == ("request", "INFO", b"1")
    assert not ended


def test_leaving_party_may_go_first():
    """The party being replaced may hang up while the new one rings; the kept one waits."""
    clock = Clock()
    bridge, a, b, observer, ended = answered_call(clock)
    c = Party(SDP_C)
    bridge.rebridge(a.bridge_side, c.bridge_side)
    b.phone.hangup(Cause(None, "transferor done"))
    assert a.heard.events == [("answered", SDP_B)] and not ended
    c.answer()
    assert bridge.parties == [a.bridge_side, c.bridge_side]
    assert a.heard.events[-1][:2] == ("request", "INVITE")


def test_nobody_left_when_the_join_fails():
    """With the leaving party gone and the new one refusing, the kept party is hung up."""
    clock = Clock()
    bridge, a, b, observer, ended = answered_call(clock)
    c = Party(SDP_C)
    failures: list = []
    bridge.rebridge(a.bridge_side, c.bridge_side).addErrback(failures.append)
    b.phone.hangup(Cause(None, "transferor done"))
    c.phone.reject(404, "Not Found")
    assert failures and ended == [bridge]
    assert a.heard.events[-1][0] == "ended" and a.phone.state is LegState.TERMINATED
    assert bridge.record.hangup_by == "switch" and bridge.record.cause == "SIP;cause=404"


def test_kept_party_hangs_up_while_the_new_one_rings():
    """The kept party's BYE cancels the new party and ends the old one."""
    clock = Clock()
    bridge, a, b, observer, ended = answered_call(clock)
    c = Party(SDP_C)
    failures: list = []
    bridge.rebridge(a.bridge_side, c.bridge_side).addErrback(failures.append)
    a.phone.hangup(Cause(None, "bye"))
    assert c.heard.events == [("failed", 487, "bye")]
    assert b.heard.events == [("ended", "bye")]
    assert ended == [bridge] and bridge.record.hangup_by == "caller" and failures


def test_new_party_that_never_answers():
    """The new party rings at most the ring timeout, then the call is as it was."""
    clock = Clock()
    bridge, a, b, observer, ended = answered_call(clock, ring_timeout=20)
    c = Party(SDP_C)
    failures: list = []
    bridge.rebridge(a.bridge_side, c.bridge_side).addErrback(lambda f: failures.append(f.value.status))
    clock.advance(20)
    assert failures == [480] and c.heard.events == [("failed", 480, "No Answer")]
    assert bridge.state is BridgeState.ANSWERED and not ended


def test_cancelling_the_rebridge_stops_the_new_party_ringing():
    """Whoever asked may cancel while the new party rings: it is CANCELled (487),
    the Deferred fails with 487 and the call is as it was; no ring timer is left."""
    clock = Clock()
    bridge, a, b, observer, ended = answered_call(clock, ring_timeout=20)
    c = Party(SDP_C)
    failures: list = []
    d = bridge.rebridge(a.bridge_side, c.bridge_side)
    d.addErrback(lambda f: failures.append((f.value.status, f.value.reason)))
    assert c.rung == [c.phone]
    d.cancel()
    assert failures == [(487, "Request Terminated")]
    assert c.heard.events == [("failed", 487, "Request Terminated")]
    assert bridge.state is BridgeState.ANSWERED and bridge.parties == [a.bridge_side, b.bridge_side]
    assert b.heard.events == [] and not ended
    assert [call.args for call in clock.getDelayedCalls()] == [("too_long",)]  # the ring timer went
    # A cancel after the re-bridge is over changes nothing.
    e = Party(SDP_C)
    joined = bridge.rebridge(a.bridge_side, e.bridge_side)
    e.answer()
    joined.cancel()
    assert bridge.parties == [a.bridge_side, e.bridge_side] and bridge.state is BridgeState.ANSWERED


def test_rebridge_refused_outside_an_answered_call():
    """Before answer, during another re-bridge, or after the end, re-bridging fails."""
    clock = Clock()
    bridge, a, b, observer, ended = answered_call(clock)
    c, d = Party(SDP_C), Party(SDP_C)
    bridge.rebridge(a.bridge_side, c.bridge_side)
    busy: list = []
    bridge.rebridge(a.bridge_side, d.bridge_side).addErrback(lambda f: busy.append(f.value.status))
    assert busy == [491] and d.rung == []
    # A leg built for a re-bridge that cannot happen is let go, never dialled.
    assert d.bridge_side.state is LegState.TERMINATED
    assert d.heard.events == [("failed", 491, "Request Pending")]
    e = Party(SDP_C)
    bridge.hangup(Cause(None, "operator"))
    bridge.rebridge(a.bridge_side, e.bridge_side).addErrback(lambda f: busy.append(f.value.status))
    assert busy == [491, 481] and e.bridge_side.state is LegState.TERMINATED
