"""Delayed offer (RFC 3261 §13.2.1, RFC 3264 §5): an INVITE without SDP is bridged with
the offer in the callee's 200 and the answer in the caller's ACK, which the callee's
leg holds its ACK for. Driven through the engine with a fake transport and clock,
directly and through the relay."""

from __future__ import annotations

from twisted.logger import globalLogPublisher

from phpvoip.config import CallSettings
from phpvoip.engine import Engine
from phpvoip.legs.sip_common import SipLeg
from phpvoip.media.relay import RelayEngine
from phpvoip.router import Router
from phpvoip.sip.message import Response, parse
from phpvoip.sip.timers import Timers
from tests.unit.test_call_events import caller_request
from tests.unit.test_engine import (
    ANSWER as VALID_ANSWER,
)
from tests.unit.test_engine import (
    BACKEND,
    PHONE,
    FakeTransport,
    answer,
    deliver,
    invite,
    make_engine,
    requests,
    responses,
    settle,
    trunk,
)
from tests.unit.test_engine import (
    OFFER as VALID_OFFER,
)
from tests.unit.test_media_relay import FakeReactor, ports_of, result, rtp, sdp

SDP = "application/sdp"
OFFER = b"v=0\r\no=bob 1 1 IN IP4 192.0.2.20\r\n"
ANSWER = b"v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\n"


def ack_with(ok: Response, body: bytes | None, cseq: int = 1, branch: str = "z9hG4bKack1") -> bytes:
    """The caller's ACK of `ok`, with `body` (the answer) when given."""
    ack = parse(caller_request("ACK", ok, cseq, branch))
    if body is not None:
        ack.add("Content-Type", SDP)
        ack.body = body
    return bytes(ack)


def callee_offers(engine, transport, offer: bytes = OFFER):
    """The caller dials without SDP; the callee answers 200 with `offer`. Returns the
    callee's INVITE, its 200 (as bytes) and the 200 the caller got."""
    deliver(engine, invite(body=b""))
    [out] = requests(transport.take(), BACKEND)
    assert out.body == b"" and not out.get("Content-Type")
    ok_out = answer(out, 200, body=offer)
    deliver(engine, ok_out, BACKEND)
    sent = transport.take()
    assert requests(sent, BACKEND) == []  # the ACK waits for the caller's answer
    [ok] = [r for r in responses(sent, PHONE) if r.status == 200]
    return out, ok_out, ok


def test_offer_in_the_200_answer_in_the_ack():
    """The callee's offer reaches the caller in its 200; the caller's ACK answer reaches
    the callee in its ACK (CSeq of the INVITE, SDP content type); nothing else waits."""
    engine, transport, clock = make_engine(trunk())
    out, ok_out, ok = callee_offers(engine, transport)
    assert ok.body == OFFER and ok.get("Content-Type") == SDP
    deliver(engine, ack_with(ok, ANSWER))
    [ack] = requests(transport.take(), BACKEND)
    assert (ack.method, ack.cseq.seq, ack.cseq.method) == ("ACK", 1, "ACK")
    assert ack.body == ANSWER and ack.get("Content-Type") == SDP
    assert ack.to.tag == "callee" and ack.call_id == out.call_id
    clock.advance(SipLeg.ACK_HOLD + 1)
    assert requests(transport.take(), BACKEND) == []  # the safety timer was stopped
    [bridge] = engine.calls.values()
    assert bridge.inbound.remote_sdp == ANSWER and bridge.outbound.remote_sdp == OFFER


def test_retransmitted_200_is_absorbed_while_the_ack_is_held():
    """The callee's 200 again (its ACK is held) brings no ACK and no second 200 to the
    caller; once the ACK has gone, a retransmission gets the same ACK again."""
    engine, transport, clock = make_engine(trunk())
    out, ok_out, ok = callee_offers(engine, transport)
    deliver(engine, ok_out, BACKEND)
    deliver(engine, ok_out, BACKEND)
    sent = transport.take()
    assert requests(sent, BACKEND) == [] and [r for r in responses(sent, PHONE) if r.status == 200] == []
    deliver(engine, ack_with(ok, ANSWER))
    [ack] = requests(transport.take(), BACKEND)
    deliver(engine, ok_out, BACKEND)
    [again] = requests(transport.take(), BACKEND)
    assert again.body == ANSWER and again.top_via.params["branch"] == ack.top_via.params["branch"]


def test_safety_timer_acks_without_a_body_and_no_ack_ends_the_call():
    """A caller that never ACKs: after ACK_HOLD the callee gets a bare ACK (logged);
    at 64*T1 the no-ACK path BYEs both parties (the callee after its ACK)."""
    logged: list[dict] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        engine, transport, clock = make_engine(trunk())
        callee_offers(engine, transport)
        clock.advance(SipLeg.ACK_HOLD - 0.1)
        assert requests(transport.take(), BACKEND) == []
        clock.advance(0.1)
        [ack] = requests(transport.take(), BACKEND)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert ack.method == "ACK" and ack.body == b"" and not ack.get("Content-Type")
    assert any("ACK sent without one" in e.get("log_format", "") for e in logged)
    clock.advance(32)
    sent = transport.take()
    assert [m.method for m in requests(sent, BACKEND)] == ["BYE"]
    assert [m.method for m in requests(sent, PHONE)] == ["BYE"]
    record = engine.records[-1]
    assert record.cause == "SIP;cause=408" and record.hangup_by == "switch"
    settle(clock)
    assert not any(engine.counts().values()), engine.counts()


def test_call_ended_while_the_ack_is_held_acks_then_byes():
    """The caller hangs up (BYE) before its ACK came: the callee is ACKed, then BYEd."""
    engine, transport, clock = make_engine(trunk())
    out, ok_out, ok = callee_offers(engine, transport)
    bye = parse(caller_request("BYE", ok, 2, "z9hG4bKbye1"))
    deliver(engine, bytes(bye))
    sent = transport.take()
    assert [m.method for m in requests(sent, BACKEND)] == ["ACK", "BYE"]
    assert requests(sent, BACKEND)[0].body == b""


def test_caller_ack_without_sdp_releases_a_bare_ack():
    """A caller whose ACK has no answer does not keep the callee waiting for the timer."""
    engine, transport, clock = make_engine(trunk())
    out, ok_out, ok = callee_offers(engine, transport)
    deliver(engine, ack_with(ok, None))
    [ack] = requests(transport.take(), BACKEND)
    assert ack.method == "ACK" and ack.body == b""


def test_an_offer_in_the_invite_is_acked_at_once():
    """With an offer in the INVITE nothing is held: the 200 is ACKed without a body at once."""
    engine, transport, clock = make_engine(trunk())
    deliver(engine, invite(body=VALID_OFFER))
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 200, body=VALID_ANSWER), BACKEND)
    [ack] = requests(transport.take(), BACKEND)
    assert ack.method == "ACK" and ack.body == b""


def test_reinvite_without_sdp_relays_offer_and_answer():
    """An answered call: the caller's re-INVITE without SDP asks the callee for an offer;
    the callee's 200 offer reaches the caller, whose ACK answer reaches the callee."""
    engine, transport, clock = make_engine(trunk())
    deliver(engine, invite(body=VALID_OFFER))
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 200, body=VALID_ANSWER), BACKEND)
    [ok] = [r for r in responses(transport.take(), PHONE) if r.status == 200]
    deliver(engine, ack_with(ok, None))
    reinvite = parse(caller_request("INVITE", ok, 2, "z9hG4bKre2"))
    deliver(engine, bytes(reinvite))
    [re_out] = [m for m in requests(transport.take(), BACKEND) if m.method == "INVITE"]
    assert re_out.body == b""
    re_ok = answer(re_out, 200, tag="callee", body=OFFER)
    deliver(engine, re_ok, BACKEND)
    deliver(engine, re_ok, BACKEND)  # retransmitted while the ACK is held
    sent = transport.take()
    assert requests(sent, BACKEND) == []
    [ok2] = [r for r in responses(sent, PHONE) if r.status == 200 and r.cseq.method == "INVITE"]
    assert ok2.body == OFFER
    deliver(engine, ack_with(ok2, ANSWER, cseq=2, branch="z9hG4bKack2"))
    [ack] = requests(transport.take(), BACKEND)
    assert (ack.method, ack.cseq.seq, ack.body) == ("ACK", re_out.cseq.seq, ANSWER)


# -- through the relay ------------------------------------------------------------------------

ALICE, BOB, RELAY = ("192.0.2.10", 4000), ("192.0.2.20", 5000), "127.0.0.1"


def test_delayed_offer_through_the_relay():
    """Relay mode: the caller is offered the relay's side-a port for the callee's offer;
    the callee's ACK answer names the relay's side-b port; RTP flows both ways."""
    reactor, transport = FakeReactor(), FakeTransport()
    relay = RelayEngine(reactor, RELAY, (30000, 30019))
    result(relay.start())
    engine = Engine(transport, reactor, "127.0.0.1", (trunk(),), Router(()), Timers(),
                    CallSettings(keepalive_interval=0), media=relay)
    engine.start()
    out, ok_out, ok = callee_offers(engine, transport, sdp(*BOB))
    [bridge] = engine.calls.values()
    session = bridge.session
    port_a, port_b = session.ports("a")[0], session.ports("b")[0]
    assert ports_of(ok.body) == (RELAY, [port_a])
    deliver(engine, ack_with(ok, sdp(*ALICE)))
    [ack] = requests(transport.take(), BACKEND)
    assert ack.method == "ACK" and ports_of(ack.body) == (RELAY, [port_b])
    reactor.deliver(port_a, rtp(1), ALICE)
    reactor.deliver(port_b, rtp(1, ssrc=9), BOB)
    assert [dest for _, dest in reactor.sent(port_b)] == [BOB]
    assert [dest for _, dest in reactor.sent(port_a)] == [ALICE]


def test_relay_refusing_the_ack_answer_ends_the_call():
    """An answer the relay cannot use (no common stream) ends the call: the callee still
    gets its ACK before the BYE, the caller a BYE."""
    reactor, transport = FakeReactor(), FakeTransport()
    relay = RelayEngine(reactor, RELAY, (30020, 30039))
    result(relay.start())
    engine = Engine(transport, reactor, "127.0.0.1", (trunk(),), Router(()), Timers(),
                    CallSettings(keepalive_interval=0), media=relay)
    engine.start()
    out, ok_out, ok = callee_offers(engine, transport, sdp(*BOB))
    [bridge] = engine.calls.values()
    own = bridge.session.ports("a")[0]
    deliver(engine, ack_with(ok, sdp(RELAY, own)))  # the relay's own port: refused
    sent = transport.take()
    assert [m.method for m in requests(sent, BACKEND)] == ["ACK", "BYE"]
    assert [m.method for m in requests(sent, PHONE)] == ["BYE"]
    assert not engine.calls




def test_reinvite_without_sdp_through_the_relay():
    """Relay mode: the caller's re-INVITE without SDP; the callee's offer (a new port)
    reaches the caller as the relay's side a, the caller's ACK answer reaches the
    callee as side b, and RTP then goes to the callee's new port."""
    reactor, transport = FakeReactor(), FakeTransport()
    relay = RelayEngine(reactor, RELAY, (30040, 30059))
    result(relay.start())
    engine = Engine(transport, reactor, "127.0.0.1", (trunk(),), Router(()), Timers(),
                    CallSettings(keepalive_interval=0), media=relay)
    engine.start()
    deliver(engine, invite(body=sdp(*ALICE)))
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 200, body=sdp(*BOB)), BACKEND)
    [ok] = [r for r in responses(transport.take(), PHONE) if r.status == 200]
    deliver(engine, ack_with(ok, None))
    transport.take()
    [bridge] = engine.calls.values()
    port_a, port_b = bridge.session.ports("a")[0], bridge.session.ports("b")[0]
    deliver(engine, caller_request("INVITE", ok, 2, "z9hG4bKre3"))
    [re_out] = [m for m in requests(transport.take(), BACKEND) if m.method == "INVITE"]
    assert re_out.body == b""
    deliver(engine, answer(re_out, 200, body=sdp(BOB[0], 5002)), BACKEND)
    sent = transport.take()
    assert requests(sent, BACKEND) == []
    [ok2] = [r for r in responses(sent, PHONE) if r.status == 200 and r.cseq.method == "INVITE"]
    assert ports_of(ok2.body) == (RELAY, [port_a])
    deliver(engine, ack_with(ok2, sdp(*ALICE), cseq=2, branch="z9hG4bKack3"))
    [ack] = requests(transport.take(), BACKEND)
    assert ack.method == "ACK" and ports_of(ack.body) == (RELAY, [port_b])
    reactor.deliver(port_a, rtp(1), ALICE)
    assert [dest for _, dest in reactor.sent(port_b)] == [(BOB[0], 5002)]
