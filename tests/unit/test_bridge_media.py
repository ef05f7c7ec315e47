"""The bridge with a media engine: every SDP crosses the relay (over a fake reactor),
or an engine whose answers come later; refusals become 503/400/488; rtp_timeout ends
the call; transfers re-pair the relay's sides."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from phpvoip.bridge import Bridge, BridgeState, RebridgeFailed
from phpvoip.callrecord import CallRecord
from phpvoip.interfaces import Cause, LegReply, LegState, MediaUnavailable
from phpvoip.media.relay import RelayEngine
from tests.unit.test_media_relay import FakeReactor, ports_of, result, rtp, sdp
from tests.unit.test_rebridge import Party

RELAY = "127.0.0.1"
ALICE, BOB, CAROL = "192.0.2.10", "192.0.2.20", "192.0.2.30"
SDP_TYPE = "application/sdp"


def relay(reactor: FakeReactor, ports: tuple[int, int] = (30000, 30019), rtp_timeout: float = 60.0) -> Any:
    engine = RelayEngine(reactor, RELAY, ports, rtp_timeout=rtp_timeout)
    result(engine.start())
    return engine


def start_call(reactor: Any, media: Any, name: str = "call-1", offer: bytes | None = None):
    """Alice (caller) dials Bob (callee) through a bridge using `media`."""
    a, b = Party(offer or sdp(ALICE, 4000)), Party(sdp(BOB, 5000))
    record = CallRecord(name, "cid-" + name, "1001", "2005", reactor.seconds())
    ended: list = []
    bridge = Bridge(record, a.bridge_side, b.bridge_side, reactor, 30.0, 3600.0, ended.append, media=media)
    a.phone.offer = a.sdp
    a.phone.dial()
    bridge.start()
    return bridge, a, b, ended


def answered(reactor: Any, media: Any, name: str = "call-1"):
    bridge, a, b, ended = start_call(reactor, media, name)
    b.answer()
    assert bridge.state is BridgeState.ANSWERED
    return bridge, a, b, ended


def test_each_leg_sees_the_relay():
    """The callee is offered the relay's side-b ports, the caller answered with side a's;
    RTP each way is forwarded to the other party; the counters land on the record."""
    reactor = FakeReactor()
    engine = relay(reactor)
    bridge, a, b, ended = answered(reactor, engine)
    session = bridge.session
    port_a, port_b = session.ports("a")[0], session.ports("b")[0]
    assert ports_of(b.phone.remote_sdp) == (RELAY, [port_b])
    [answer] = [e for e in a.heard.events if e[0] == "answered"]
    assert ports_of(answer[1]) == (RELAY, [port_a])
    for seq in range(3):
        reactor.deliver(port_a, rtp(seq), (ALICE, 4000))
    reactor.deliver(port_b, rtp(0, ssrc=9), (BOB, 5000))
    assert [dest for _, dest in reactor.sent(port_b)] == [(BOB, 5000)] * 3
    assert [dest for _, dest in reactor.sent(port_a)] == [(ALICE, 4000)]
    a.phone.hangup(Cause(None, "bye"))
    assert ended == [bridge] and bridge.session is None
    media = bridge.record.media
    assert media["a>b"]["packets"] == 3 and media["b>a"]["packets"] == 1
    assert engine.totals()["port_pairs_in_use"] == 0 and not engine.sessions


def test_hold_reinvite_goes_through_the_relay():
    """A re-INVITE putting the callee on hold reaches it with the relay's address and
    the hold kept; its answer reaches the caller rewritten too."""
    reactor = FakeReactor()
    bridge, a, b, ended = answered(reactor, relay(reactor))
    b.heard.reply = LegReply(200, "OK", sdp(BOB, 5000, direction="recvonly"), SDP_TYPE)
    replies: list = []
    a.phone.request("INVITE", sdp(ALICE, 4000, direction="sendonly"), SDP_TYPE).addCallback(replies.append)
    [(_, method, offer)] = [e for e in b.heard.events if e[0] == "request"]
    assert method == "INVITE" and b"a=sendonly" in offer
    assert ports_of(offer) == (RELAY, bridge.session.ports("b"))
    [reply] = replies
    assert reply.status == 200 and b"a=recvonly" in reply.body
    assert ports_of(reply.body) == (RELAY, bridge.session.ports("a"))


def test_unusable_reinvite_is_refused_and_the_call_goes_on():
    """After answer, a re-INVITE whose SDP the engine refuses is answered 400 (bad
    SDP) or 488 and never reaches the other party; the call stays up."""
    reactor = FakeReactor()
    bridge, a, b, ended = answered(reactor, relay(reactor))
    replies: list = []
    a.phone.request("INVITE", b"not sdp", SDP_TYPE).addCallback(replies.append)
    own_port = bridge.session.ports("b")[0]
    a.phone.request("INVITE", sdp(RELAY, own_port), SDP_TYPE).addCallback(replies.append)
    assert [(r.status, r.reason[:8]) for r in replies] == [(400, "Bad SDP:"), (488, "Not Acce")]
    assert [e for e in b.heard.events if e[0] == "request"] == []
    assert bridge.state is BridgeState.ANSWERED and not ended


def test_exhausted_relay_refuses_with_503():
    """With no port pairs left the next caller gets 503 and the callee is never dialled."""
    reactor = FakeReactor()
    engine = relay(reactor, ports=(30000, 30003))  # two pairs: one call
    first, *_ = answered(reactor, engine, "call-1")
    bridge, a, b, ended = start_call(reactor, engine, "call-2")
    assert a.heard.events == [("failed", 503, "Service Unavailable")]
    assert b.rung == [] and ended == [bridge]
    assert (bridge.record.status, bridge.record.hangup_by) == (503, "switch")
    assert first.state is BridgeState.ANSWERED


def test_bad_offer_is_refused_before_dialling():
    """A caller's offer that does not parse gets 400 naming the problem; one the relay
    cannot use (it names the relay's own port) gets 488; nothing is left bound."""
    reactor = FakeReactor()
    engine = relay(reactor)
    bridge, a, b, ended = start_call(reactor, engine, offer=b"v=0\r\nbogus\r\n")
    [(kind, status, reason)] = a.heard.events
    assert (kind, status) == ("failed", 400) and reason.startswith("Bad SDP: ")
    assert b.rung == [] and ended == [bridge]
    held = answered(reactor, engine, "call-2")[0]
    own = held.session.ports("a")[0]
    bridge, a, b, ended = start_call(reactor, engine, "call-3", offer=sdp(RELAY, own))
    assert a.heard.events == [("failed", 488, "Not Acceptable Here")] and b.rung == []
    assert engine.totals()["port_pairs_in_use"] == 2  # only call-2's


def test_unusable_answer_fails_the_call_before_answer():
    """A callee's 200 with SDP the engine refuses: the caller gets 400, the callee a BYE."""
    reactor = FakeReactor()
    bridge, a, b, ended = start_call(reactor, relay(reactor))
    b.sdp = b"garbage"
    b.answer()
    assert a.heard.events[-1][:2] == ("failed", 400)
    assert b.heard.events[-1][0] == "ended" and ended == [bridge]
    assert bridge.record.answer is None


def test_rtp_timeout_ends_the_call():
    """No RTP for rtp_timeout: both legs are hung up with "RTP timeout" (cause 408)."""
    reactor = FakeReactor()
    engine = relay(reactor, rtp_timeout=20)
    bridge, a, b, ended = answered(reactor, engine)
    port_a = bridge.session.ports("a")[0]
    for second in range(30):
        reactor.deliver(port_a, rtp(second), (ALICE, 4000))
        reactor.advance(1)
    assert not ended
    reactor.advance(25)
    assert ended == [bridge]
    assert a.heard.events[-1] == ("ended", "RTP timeout") and b.heard.events[-1] == ("ended", "RTP timeout")
    record = bridge.record
    assert (record.reason, record.cause, record.hangup_by) == ("RTP timeout", "SIP;cause=408", "switch")
    assert record.media["a>b"]["packets"] == 30


def test_transfer_repairs_the_relay():
    """A transfer target is offered the relay's new side; on its answer the kept party
    talks to it through the ports it already had (no re-INVITE) and the leaving
    party's ports are released."""
    reactor = FakeReactor()
    engine = relay(reactor)
    bridge, a, b, ended = answered(reactor, engine)
    port_a = bridge.session.ports("a")[0]
    c = Party(sdp(CAROL, 6000))
    joined: list = []
    bridge.rebridge(a.bridge_side, c.bridge_side, by="callee").addCallback(joined.append)
    port_c = bridge.session.ports("c")[0]
    assert ports_of(c.phone.remote_sdp) == (RELAY, [port_c])
    c.answer()
    assert joined == [c.bridge_side] and b.heard.events[-1] == ("ended", "Call transferred")
    assert [e for e in a.heard.events if e[0] == "request"] == []
    assert sorted(bridge.session.sides()) == ["a", "c"] and bridge.session.paired == ("c", "a")
    reactor.deliver(port_a, rtp(1), (ALICE, 4000))
    assert [dest for _, dest in reactor.sent(port_c)] == [(CAROL, 6000)]
    assert engine.totals()["port_pairs_in_use"] == 2


def test_failed_transfer_releases_the_target_side():
    """A target that does not answer: its ports go back, the parties keep talking."""
    reactor = FakeReactor()
    engine = relay(reactor)
    bridge, a, b, ended = answered(reactor, engine)
    c = Party(sdp(CAROL, 6000))
    failures: list = []
    bridge.rebridge(a.bridge_side, c.bridge_side).addErrback(lambda f: failures.append(f.value))
    assert engine.totals()["port_pairs_in_use"] == 3
    c.phone.reject(486, "Busy Here")
    assert isinstance(failures[0], RebridgeFailed)
    assert sorted(bridge.session.sides()) == ["a", "b"] and engine.totals()["port_pairs_in_use"] == 2
    port_a = bridge.session.ports("a")[0]
    reactor.deliver(port_a, rtp(1), (ALICE, 4000))
    assert [dest for _, dest in reactor.sent(bridge.session.ports("b")[0])] == [(BOB, 5000)]


class SlowSession:
    """An engine session whose answers come when the test says (as rtpengine's do)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str, defer.Deferred]] = []
        self.closed = False

    def offer(self, from_side: str, to_side: str, body: bytes) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.asked.append(("offer", from_side, to_side, d))
        return d

    def answer(self, from_side: str, to_side: str, body: bytes) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.asked.append(("answer", from_side, to_side, d))
        return d

    def counters(self) -> dict:
        return {}

    def close(self) -> defer.Deferred:
        self.closed = True
        return defer.succeed(None)


class SlowEngine:
    name = "slow"

    def __init__(self, refuse: bool = False) -> None:
        self.sessions: list[SlowSession] = []
        self.refuse = refuse

    def session(self, call_id: str, on_timeout: Any) -> SlowSession:
        if self.refuse:
            raise MediaUnavailable("rtpengine at udp:127.0.0.1:2223 is not answering")
        self.sessions.append(SlowSession())
        return self.sessions[-1]


def test_legs_wait_for_the_engine_in_order():
    """Each leg acts once the engine has answered, in the order the SDP came: the
    callee is dialled after the offer, the caller hears 183 then 200 in order even
    when the engine answers out of order (crossings are queued)."""
    reactor = FakeReactor()
    engine = SlowEngine()
    bridge, a, b, ended = start_call(reactor, engine)
    [session] = engine.sessions
    assert b.rung == []
    [(kind, src, dst, d)] = session.asked
    assert (kind, src, dst) == ("offer", "a", "b")
    d.callback(b"offer-for-bob")
    assert b.rung == [b.phone] and b.phone.remote_sdp == b"offer-for-bob"
    b.phone.progress(183, "Session Progress", b"early")
    b.answer()
    assert [(k, s, t) for k, s, t, _ in session.asked[1:]] == [("answer", "b", "a")]
    assert a.heard.events == [] and bridge.state is BridgeState.SETUP
    session.asked[1][3].callback(b"early-for-alice")
    session.asked[2][3].callback(b"answer-for-alice")
    assert a.heard.events == [("progress", 183, b"early-for-alice"), ("answered", b"answer-for-alice")]
    assert bridge.state is BridgeState.ANSWERED


def test_call_ended_while_the_engine_thinks():
    """A caller who hangs up while the engine is asked: the late answer does nothing
    and the session is closed."""
    reactor = FakeReactor()
    engine = SlowEngine()
    bridge, a, b, ended = start_call(reactor, engine)
    [session] = engine.sessions
    a.phone.hangup(Cause(487, "cancelled"))
    assert ended == [bridge] and session.closed
    session.asked[0][3].callback(b"too late")
    assert b.rung == [] and b.bridge_side.state is LegState.TERMINATED


def test_engine_down_refuses_with_503_and_engine_error_after_answer():
    """An engine that takes no calls refuses the caller 503; once answered, an engine
    failing a re-INVITE's offer answers it 503 and the call carries on."""
    reactor = FakeReactor()
    bridge, a, b, ended = start_call(reactor, SlowEngine(refuse=True))
    assert a.heard.events == [("failed", 503, "Service Unavailable")] and b.rung == []
    engine = SlowEngine()
    bridge, a, b, ended = start_call(reactor, engine, "call-2")
    session = engine.sessions[0]
    session.asked[0][3].callback(b"o")
    b.answer()
    session.asked[1][3].callback(b"a")
    replies: list = []
    a.phone.request("INVITE", b"re-offer", SDP_TYPE).addCallback(replies.append)
    session.asked[2][3].errback(MediaUnavailable("rtpengine does not answer"))
    assert [r.status for r in replies] == [503] and bridge.state is BridgeState.ANSWERED


def test_call_record_row_carries_the_media_figures():
    """The CDR's rtp_* columns: packets each party sent (a transfer target counts for
    the side it took), losses, worst jitter; NULL with direct media."""
    from phpvoip.cdr import media_columns

    assert media_columns(None) == (None,) * 6
    media = {
        "a>b": {"packets": 10, "lost": 1, "jitter_ms": 2.5},
        "b>a": {"packets": 7, "lost": 0, "jitter_ms": 1.0},
        "a>c": {"packets": 5, "lost": 0, "jitter_ms": 4.0},
        "c>a": {"packets": 6, "lost": 2, "jitter_ms": 0.5},
        "sides": {"a": "caller", "b": "callee", "c": "callee"},
    }
    assert media_columns(media) == (15, 13, 1, 2, 4.0, 1.0)
    reactor = FakeReactor()
    bridge, a, b, ended = answered(reactor, relay(reactor))
    reactor.deliver(bridge.session.ports("a")[0], rtp(0), (ALICE, 4000))
    b.phone.hangup(Cause(None, "bye"))
    assert bridge.record.media["sides"] == {"a": "caller", "b": "callee"}
    assert media_columns(bridge.record.media)[:4] == (1, 0, 0, 0)
