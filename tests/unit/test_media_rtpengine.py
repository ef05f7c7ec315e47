"""The rtpengine engine's own logic under a Clock: down and up again, the media-timeout
poll, and the fallback engine. Replies have the shape rtpengine 10.5 sends (the interop
test in tests/interop/test_rtpengine.py runs the same code against the daemon)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from phpvoip.interfaces import IMediaEngine, IMediaSession, MediaUnavailable
from phpvoip.media.bencode import decode, encode
from phpvoip.media.fallback import FallbackEngine
from phpvoip.media.rtpengine import RtpengineEngine

NG = ("127.0.0.1", 2223)


class Reactor(Clock):
    """A Clock that can also bind UDP: the port is a list of what was written."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []
        self.protocol: Any = None

    def listenUDP(self, port: int, protocol: Any, interface: str = "") -> Any:
        self.protocol = protocol
        protocol.makeConnection(self)
        return self

    def write(self, datagram: bytes, address: tuple[str, int]) -> None:
        self.sent.append(datagram)

    def stopListening(self) -> defer.Deferred:
        self.protocol.doStop()
        return defer.succeed(None)

    def requests(self) -> list[dict]:
        """What was sent, decoded, each with its cookie under "_cookie"."""
        found = []
        for datagram in self.sent:
            cookie, _, body = datagram.partition(b" ")
            request = {key.decode(): value for key, value in decode(body).items()}
            request["_cookie"] = cookie
            found.append(request)
        return found

    def answer(self, command: str, reply: dict, **match: Any) -> int:
        """Reply to every unanswered `command` request (matching `match`); how many."""
        count = 0
        for request in self.requests():
            if request["command"] != command.encode():
                continue
            if any(request.get(key) != value.encode() for key, value in match.items()):
                continue
            self.protocol.datagramReceived(request["_cookie"] + b" " + encode(reply), NG)
            count += 1
        return count


def stream(port: int, last: int, packets: int = 0, rtp: bool = True) -> dict:
    return {"local port": port, "last packet": last, "flags": ["RTP" if rtp else "RTCP", "filled"],
            "stats": {"packets": packets, "bytes": packets * 172, "errors": 0}}


SENDRECV = ("initialized", "send", "recv")


def query_reply(last: int, flags: tuple[str, ...] = SENDRECV, packets: int = 0) -> dict:
    def tag(name: str, other: str, port: int) -> dict:
        return {"tag": name, "subscribers": [{"tag": other, "type": "offer/answer"}],
                "medias": [{"index": 1, "type": "audio", "flags": list(flags),
                            "streams": [stream(port, last, packets), stream(port + 1, last, rtp=False)]}]}

    return {"created": 1000, "last signal": 1000, "SSRC": {},
            "tags": {"a": tag("a", "b", 40010), "b": tag("b", "a", 40000)}, "result": "ok"}


def started(rtp_timeout: float = 0.0, **options: Any) -> tuple[RtpengineEngine, Reactor]:
    reactor = Reactor()
    engine = RtpengineEngine(reactor, "udp:127.0.0.1:2223", rtp_timeout=rtp_timeout, **options)
    d = engine.start()
    assert reactor.answer("ping", {"result": "pong"}) == 1
    assert engine.up and d.called
    reactor.sent.clear()
    return engine, reactor


def test_start_fails_with_the_address_when_nothing_answers():
    """No pong after the retries: start() errbacks MediaUnavailable naming the ng address."""
    reactor = Reactor()
    engine = RtpengineEngine(reactor, "udp:127.0.0.1:2223", timeout=1.0, retries=2)
    verifyObject(IMediaEngine, engine)
    failures: list = []
    engine.start().addErrback(failures.append)
    for step in (1.0, 1.0, 0.9):
        reactor.advance(step)
    assert failures == [] and len(reactor.sent) == 3
    reactor.advance(0.1)
    [failure] = failures
    assert failure.check(MediaUnavailable)
    assert str(failure.value) == "rtpengine at udp:127.0.0.1:2223 does not answer ng ping"
    with pytest.raises(MediaUnavailable):
        engine.session("c", lambda: None)


def test_a_timeout_marks_the_engine_down_until_a_ping_is_answered():
    """Down after a timed-out request: new sessions refused, a ping every 5 s, up on pong;
    a session made before still sends its requests."""
    engine, reactor = started(timeout=1.0, retries=0)
    old = engine.session("old", lambda: None)
    verifyObject(IMediaSession, old)
    failures: list = []
    old.offer("a", "b", b"v=0\r\n").addErrback(failures.append)
    reactor.advance(1.0)
    assert failures[0].check(MediaUnavailable) and not engine.up
    with pytest.raises(MediaUnavailable, match="not answering"):
        engine.session("new", lambda: None)
    reactor.sent.clear()
    old.offer("a", "b", b"v=0\r\n").addErrback(failures.append)
    assert [r["command"] for r in reactor.requests()] == [b"offer"]
    reactor.advance(1.0)  # that offer times out too
    reactor.sent.clear()
    reactor.advance(4.0)
    assert [r["command"] for r in reactor.requests()] == [b"ping"]
    reactor.advance(1.0)  # unanswered: the next ping 5 s later
    reactor.advance(5.0)
    assert [r["command"] for r in reactor.requests()] == [b"ping", b"ping"]
    reactor.answer("ping", {"result": "pong"})
    assert engine.up
    assert engine.session("new", lambda: None).call_id == "new"


def test_offer_and_answer_carry_the_tags_and_flags_and_map_errors():
    """offer: from-tag = offering side; answer: from-tag = the offerer, to-tag = the answerer;
    rtpengine's error becomes ValueError with its reason."""
    engine, reactor = started()
    session = engine.session("call", lambda: None)
    got: list = []
    session.offer("a", "b", b"OFFER").addBoth(got.append)
    reactor.answer("offer", {"sdp": "REWRITTEN", "result": "ok"})
    session.answer("b", "a", b"ANSWER").addBoth(got.append)
    reactor.answer("answer", {"result": "error", "error-reason": "Unknown call-id"})
    offer, answer = reactor.requests()
    assert (offer["call-id"], offer["from-tag"], offer["to-tag"]) == (b"call", b"a", b"b")
    assert offer["sdp"] == b"OFFER"
    assert offer["replace"] == [b"origin", b"session-connection"] and offer["ICE"] == b"remove"
    assert (answer["from-tag"], answer["to-tag"], answer["sdp"]) == (b"a", b"b", b"ANSWER")
    assert got[0] == b"REWRITTEN"
    assert got[1].check(ValueError) and str(got[1].value) == "Unknown call-id"
    session.offer("a", "b", b"OFFER").addBoth(got.append)
    reactor.answer("offer", {"result": "error", "error-reason": "Ran out of ports"})
    assert got[2].check(MediaUnavailable)


def answered(engine: RtpengineEngine, reactor: Reactor, call_id: str, timeouts: list) -> Any:
    session = engine.session(call_id, lambda: timeouts.append(call_id))
    session.answer("b", "a", b"ANSWER")
    reactor.answer("answer", {"sdp": "X", "result": "ok"}, **{"call-id": call_id})
    return session


def test_media_timeout_poll_is_one_timer_spread_over_the_sessions():
    """Three answered calls, rtp_timeout 30: one query every 10/3 s, each call once per 10 s
    (the first wait is set by the first call alone)."""
    engine, reactor = started(rtp_timeout=30.0)
    timeouts: list = []
    for name in ("one", "two", "three"):
        answered(engine, reactor, name, timeouts)
    reactor.sent.clear()
    assert len(reactor.getDelayedCalls()) == 1
    reactor.advance(10.0)
    queried = [r["call-id"] for r in reactor.requests()]
    reactor.answer("query", query_reply(last=1000))
    reactor.sent.clear()
    for _ in range(6):
        reactor.advance(10.0 / 3)
        queried += [r["call-id"] for r in reactor.requests() if r["command"] == b"query"]
        reactor.answer("query", query_reply(last=1000))
        reactor.sent.clear()
    assert queried == [b"one", b"two", b"three"] * 2 + [b"one"]


def test_silent_call_times_out_once_moving_and_inactive_calls_do_not():
    """No change in "last packet" for rtp_timeout: on_timeout once; packets or all-inactive: never."""
    engine, reactor = started(rtp_timeout=30.0)
    timeouts: list = []
    for name in ("silent", "talking", "held"):
        answered(engine, reactor, name, timeouts)
    last = 1000
    for _ in range(30):  # 100 s
        reactor.advance(10.0 / 3)
        last += 3
        reactor.answer("query", query_reply(last=1000), **{"call-id": "silent"})
        reactor.answer("query", query_reply(last=last, packets=last), **{"call-id": "talking"})
        reactor.answer("query", query_reply(last=1000, flags=("initialized",)), **{"call-id": "held"})
        reactor.sent.clear()
    assert timeouts == ["silent"]
    assert engine.session("x", lambda: None)  # the engine is fine


def test_a_call_rtpengine_forgot_times_out():
    """A query answered "Unknown call-id" (rtpengine's own timeout, a restart): on_timeout."""
    engine, reactor = started(rtp_timeout=3.0)
    timeouts: list = []
    answered(engine, reactor, "gone", timeouts)
    reactor.advance(1.0)
    reactor.answer("query", {"result": "error", "error-reason": "Unknown call-id"})
    assert timeouts == ["gone"]


def test_close_queries_then_deletes_once_and_keeps_the_figures():
    """close(): query for final counters, delete; a second close sends nothing more; errors
    are logged, not raised."""
    engine, reactor = started()
    session = engine.session("call", lambda: None)
    first, second = session.close(), session.close()
    reactor.answer("query", query_reply(last=1000, packets=7))
    reactor.answer("delete", {"result": "error", "error-reason": "Unknown call-id"})
    assert [r["command"] for r in reactor.requests()] == [b"query", b"delete"]
    assert first.called and second.called and first.result is None
    figures = {"packets": 7, "bytes": 7 * 172}
    assert session.counters() == {"a>b": figures, "b>a": figures}
    assert engine.sessions == 0


def test_counters_take_loss_and_jitter_from_rtcp_figures_when_there_are_any():
    """rtpengine's per-SSRC "cumulative loss" and average jitter (from RTCP) fill lost and jitter_ms."""
    reply = query_reply(last=1000, packets=50)
    reply["tags"]["a"]["medias"][0]["streams"][0]["SSRC"] = 4660
    average = {"MOS": 41, "round-trip time": 2000, "jitter": 4, "packet loss": 1, "samples": 3}
    reply["SSRC"] = {"4660": {"cumulative loss": 3, "average MOS": average}}
    engine, reactor = started()
    got: list = []
    engine.session("call", lambda: None).refresh().addBoth(got.append)
    reactor.answer("query", reply)
    [figures] = got
    assert figures["a>b"] == {"packets": 50, "bytes": 8600, "lost": 3, "jitter_ms": 4.0}
    assert figures["b>a"] == {"packets": 50, "bytes": 8600}


class Relay:
    """A second engine for the fallback's sake: sessions that echo the SDP."""

    name = "relay"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self) -> defer.Deferred:
        return defer.succeed(None)

    def stop(self) -> defer.Deferred:
        return defer.succeed(None)

    def session(self, call_id: str, on_timeout: Any) -> Any:
        self.calls.append(call_id)
        relay = self

        class Session:
            def offer(self, from_side: str, to_side: str, sdp: bytes) -> defer.Deferred:
                return defer.succeed(b"relay:" + sdp)

            answer = offer

            def counters(self) -> dict:
                return {}

            def close(self) -> defer.Deferred:
                relay.calls.remove(call_id)
                return defer.succeed(None)

        return Session()


def test_fallback_takes_new_calls_while_the_primary_is_down():
    """Primary up: its sessions; a first offer lost to it moves to the fallback; primary
    down: straight to the fallback; a call on the primary keeps it."""
    engine, reactor = started(timeout=1.0, retries=0)
    relay = Relay()
    fallback = FallbackEngine(engine, relay)
    verifyObject(IMediaEngine, fallback)
    kept = fallback.session("kept", lambda: None)
    kept.offer("a", "b", b"SDP")
    reactor.answer("offer", {"sdp": "ENGINE", "result": "ok"})
    moved = fallback.session("moved", lambda: None)
    got: list = []
    moved.offer("a", "b", b"SDP").addBoth(got.append)
    reactor.advance(1.0)  # rtpengine silent: the engine goes down, the offer moves
    assert got == [b"relay:SDP"] and relay.calls == ["moved"] and not engine.up
    direct = fallback.session("direct", lambda: None)
    assert direct.offer("a", "b", b"SDP").result == b"relay:SDP"
    assert relay.calls == ["moved", "direct"] and fallback.fallen_back == 2
    reactor.sent.clear()
    kept.offer("b", "a", b"REINVITE")
    assert [r["command"] for r in reactor.requests()] == [b"offer"]
