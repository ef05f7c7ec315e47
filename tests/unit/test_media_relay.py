"""The in-process relay's logic over a fake reactor: SDP rewrite, pairing, latching,
counters, the port pool (busy ports, exhaustion, recovery), transfer, rtp_timeout."""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import LogLevel, globalLogPublisher
from zope.interface.verify import verifyObject

from phpvoip.interfaces import IMediaEngine, IMediaSession, MediaUnavailable
from phpvoip.media.ports import PortPool, check_range
from phpvoip.media.relay import RelayEngine
from phpvoip.sip.sdp import parse_sdp

RELAY = "127.0.0.1"
ALICE = "192.0.2.10"  # caller, side "a"
BOB = "192.0.2.20"  # callee, side "b"
CAROL = "192.0.2.30"  # transfer target, side "c"


class FakeSocket:
    """Records what the relay sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.sent.append((data, addr))
        return len(data)


class FakePort:
    """A bound UDP port of the fake reactor."""

    def __init__(self, reactor: FakeReactor, port: int, protocol: Any, interface: str) -> None:
        self.reactor = reactor
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.socket = FakeSocket()

    def stopListening(self) -> defer.Deferred:
        del self.reactor.bound[self.port]
        self.protocol.doStop()
        return defer.succeed(None)


class FakeReactor(task.Clock):
    """task.Clock plus listenUDP: records the protocols and lets a test deliver datagrams."""

    def __init__(self, busy: set[int] | None = None) -> None:
        super().__init__()
        self.bound: dict[int, FakePort] = {}
        self.ever: dict[int, FakePort] = {}  # last port object bound on each number
        self.busy = busy if busy is not None else set()

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> FakePort:
        if port in self.busy or port in self.bound:
            raise CannotListenError(interface, port, OSError(errno.EADDRINUSE, "Address already in use"))
        bound = self.bound[port] = self.ever[port] = FakePort(self, port, protocol, interface)
        protocol.makeConnection(bound)
        return bound

    def deliver(self, port: int, data: bytes, source: tuple[str, int]) -> None:
        self.bound[port].protocol.datagramReceived(data, source)

    def sent(self, port: int) -> list[tuple[bytes, tuple[str, int]]]:
        """Everything sent out of `port` (and taken off the record)."""
        socket = self.ever[port].socket
        sent, socket.sent = socket.sent, []
        return sent


def sdp(host: str, port: int, *extra: str, video: int | None = None, direction: str = "sendrecv") -> bytes:
    lines = ["v=0", f"o=- 1 1 IN IP4 {host}", "s=-", f"c=IN IP4 {host}", "t=0 0",
             f"m=audio {port} RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000",
             "a=rtpmap:101 telephone-event/8000", f"a={direction}", *extra]
    if video is not None:
        lines += [f"m=video {video} RTP/AVP 96", "a=rtpmap:96 H264/90000"]
    return ("\r\n".join(lines) + "\r\n").encode()


def rtp(seq: int, ts: int | None = None, ssrc: int = 0x1234, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, (seq * 160 if ts is None else ts) & 0xFFFFFFFF,
                       ssrc) + payload


def rtcp() -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, 0x1234)  # an empty receiver report


def result(d: defer.Deferred) -> Any:
    """The result of a Deferred that has fired; raises its failure."""
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    if isinstance(box[0], Exception) or hasattr(box[0], "raiseException"):
        box[0].raiseException()
    return box[0]


def ports_of(body: bytes) -> tuple[str | None, list[int]]:
    parsed = parse_sdp(body)
    return parsed.connection, [m.port for m in parsed.media]


@pytest.fixture
def reactor() -> FakeReactor:
    return FakeReactor()


@pytest.fixture
def engine(reactor: FakeReactor) -> RelayEngine:
    engine = RelayEngine(reactor, RELAY, (30000, 30019), rtp_timeout=60.0)
    result(engine.start())
    return engine


def call(engine: RelayEngine, timeouts: list[str] | None = None, name: str = "call-1",
         a: bytes | None = None, b: bytes | None = None) -> Any:
    """A session with Alice's offer relayed to Bob and his answer relayed back."""
    session = engine.session(name, lambda: (timeouts if timeouts is not None else []).append(name))
    result(session.offer("a", "b", a or sdp(ALICE, 4000)))
    result(session.answer("b", "a", b or sdp(BOB, 5000)))
    return session


def test_provides_the_interfaces(engine):
    """RelayEngine and RelaySession provide IMediaEngine and IMediaSession."""
    assert verifyObject(IMediaEngine, engine)
    assert engine.name == "relay"
    assert verifyObject(IMediaSession, engine.session("x", lambda: None))


@pytest.mark.parametrize(("low", "high"), [(30001, 30999), (30000, 30000), (0, 10), (30000, 70000)])
def test_start_refuses_a_bad_range(reactor, low, high):
    """An odd first port, a range without a pair, or ports beyond 65535 fail start()."""
    d = RelayEngine(reactor, RELAY, (low, high)).start()
    with pytest.raises(ValueError, match="media relay"):
        result(d)


def test_check_range_accepts_one_pair():
    """Two ports starting on an even one make one pair."""
    check_range(40000, 40001)
    assert PortPool(FakeReactor(), RELAY, 40000, 40001).size == 1
    assert PortPool(FakeReactor(), RELAY, 30000, 30999).size == 500


def test_offer_and_answer_are_rewritten_for_the_receiving_side(engine, reactor):
    """Bob is offered side b's ports, Alice is answered with side a's; ICE lines go,
    a=rtcp follows the port, everything else stays."""
    session = engine.session("c1", lambda: None)
    offer = sdp(ALICE, 4000, "a=rtcp:4001", "a=ice-ufrag:abcd",
                "a=candidate:1 1 UDP 1 192.0.2.10 4000 typ host", "a=ptime:20")
    to_bob = result(session.offer("a", "b", offer))
    assert ports_of(to_bob) == (RELAY, [session.ports("b")[0]])
    assert session.ports("a")[0] != session.ports("b")[0]
    text = to_bob.decode()
    assert "ice-" not in text and "candidate" not in text
    assert f"a=rtcp:{session.ports('b')[0] + 1}" in text
    assert "a=ptime:20" in text and "a=rtpmap:101 telephone-event/8000" in text
    assert "o=- 1 1 IN IP4 192.0.2.10" in text  # the origin is the party's, not ours
    to_alice = result(session.answer("b", "a", sdp(BOB, 5000)))
    assert ports_of(to_alice) == (RELAY, [session.ports("a")[0]])
    assert all(reactor.bound[p].interface == RELAY for p in reactor.bound)
    assert sorted(reactor.bound) == sorted(session.ports("a") + session.ports("b") +
                                           [p + 1 for p in session.ports("a") + session.ports("b")])


def test_media_flows_both_ways_once_answered(engine, reactor):
    """Nothing is forwarded before the answer; afterwards each party's packets leave
    through the other side's port towards the other party."""
    session = engine.session("c1", lambda: None)
    result(session.offer("a", "b", sdp(ALICE, 4000)))
    port_a, port_b = session.ports("a")[0], session.ports("b")[0]
    reactor.deliver(port_b, rtp(1), (BOB, 5000))  # Bob is quick: no pairing yet
    assert reactor.sent(port_a) == [] and engine.unpaired == 1
    result(session.answer("b", "a", sdp(BOB, 5000)))
    reactor.deliver(port_a, rtp(1), (ALICE, 4000))
    assert reactor.sent(port_b) == [(rtp(1), (BOB, 5000))]
    reactor.deliver(port_b, rtp(2), (BOB, 5000))
    assert reactor.sent(port_a) == [(rtp(2), (ALICE, 4000))]
    reactor.deliver(port_a + 1, rtcp(), (ALICE, 4001))
    assert reactor.sent(port_b + 1) == [(rtcp(), (BOB, 5001))]
    assert engine.forwarded == 3


def test_latching_follows_a_natted_caller(engine, reactor):
    """Alice's packets come from 203.0.113.5:61000, not what her SDP says: Bob's media
    goes there, and another source on her port is dropped and counted."""
    session = call(engine)
    port_a, port_b = session.ports("a")[0], session.ports("b")[0]
    nat = ("203.0.113.5", 61000)
    reactor.deliver(port_a, rtp(1), nat)
    assert reactor.sent(port_b) == [(rtp(1), (BOB, 5000))]
    reactor.deliver(port_b, rtp(1), (BOB, 5000))
    assert reactor.sent(port_a) == [(rtp(1), nat)]
    reactor.deliver(port_a, rtp(2), ("198.51.100.66", 4000))  # a stranger
    reactor.deliver(port_a, rtp(3), (ALICE, 4000))  # even the SDP's address, now
    assert reactor.sent(port_b) == []
    assert engine.unlatched == 2
    assert session.counters()["a>b"]["dropped"] == 2
    # RTCP latches on its own: the first RTCP source is kept apart from RTP's
    reactor.deliver(port_a + 1, rtcp(), ("203.0.113.5", 61001))
    reactor.deliver(port_b + 1, rtcp(), (BOB, 5001))
    assert reactor.sent(port_a + 1) == [(rtcp(), ("203.0.113.5", 61001))]


def test_reinvite_with_a_new_address_opens_the_latch(engine, reactor):
    """A re-INVITE moving Alice re-learns her source; one keeping her address does not."""
    session = call(engine)
    port_a, port_b = session.ports("a")[0], session.ports("b")[0]
    reactor.deliver(port_a, rtp(1), (ALICE, 4000))
    result(session.offer("a", "b", sdp(ALICE, 4000)))  # same address: latch stays
    result(session.answer("b", "a", sdp(BOB, 5000)))
    reactor.deliver(port_a, rtp(2), ("192.0.2.11", 4100))
    assert reactor.sent(port_b) == [(rtp(1), (BOB, 5000))]
    result(session.offer("a", "b", sdp("192.0.2.11", 4100)))  # Alice moved
    reactor.deliver(port_b, rtp(9), (BOB, 5000))
    assert reactor.sent(port_a) == [(rtp(9), ("192.0.2.11", 4100))]  # to the SDP until she speaks
    result(session.answer("b", "a", sdp(BOB, 5000)))
    assert session.ports("a")[0] == port_a  # a re-INVITE keeps the ports
    reactor.deliver(port_a, rtp(3), ("192.0.2.11", 4100))
    assert reactor.sent(port_b) == [(rtp(3), (BOB, 5000))]
    reactor.deliver(port_a, rtp(4), (ALICE, 4000))  # the old place is now a stranger
    assert reactor.sent(port_b) == []


def test_rejected_stream_gets_no_forwarding(engine, reactor):
    """Audio and video offered, video refused with port 0: audio flows, video not."""
    session = engine.session("c1", lambda: None)
    to_bob = result(session.offer("a", "b", sdp(ALICE, 4000, video=4002)))
    assert ports_of(to_bob)[1] == session.ports("b")
    to_alice = result(session.answer("b", "a", sdp(BOB, 5000, video=0)))
    assert ports_of(to_alice)[1] == [session.ports("a")[0], 0]
    (audio_a, video_a), (audio_b, video_b) = session.ports("a"), session.ports("b")
    reactor.deliver(video_a, rtp(1), (ALICE, 4002))
    reactor.deliver(audio_a, rtp(1), (ALICE, 4000))
    assert reactor.sent(video_b) == [] and reactor.sent(audio_b) == [(rtp(1), (BOB, 5000))]
    assert [s["kind"] for s in session.counters()["a>b"]["streams"]] == ["audio"]


def test_rejected_offer_stream_gets_no_ports(engine):
    """An m= line with port 0 in the offer takes no pair and stays 0."""
    session = engine.session("c1", lambda: None)
    to_bob = result(session.offer("a", "b", sdp(ALICE, 4000, video=0)))
    assert ports_of(to_bob)[1] == [session.ports("b")[0], 0]
    assert session.ports("b")[1] == 0 and engine.pool.in_use == 2


def test_counters_per_direction(engine, reactor):
    """Packets, bytes, loss from sequence numbers and jitter, each way and per stream."""
    session = call(engine)
    port_a, port_b = session.ports("a")[0], session.ports("b")[0]
    for seq in range(10):  # 3 and 6 lost on the way, the others on time
        if seq not in (3, 6):
            reactor.deliver(port_a, rtp(seq), (ALICE, 4000))
        reactor.advance(0.02)
    for seq, gap in enumerate([0.020, 0.045 - 0.020, 0.060 - 0.045, 0.080 - 0.060, 0.02]):
        reactor.deliver(port_b, rtp(seq, ssrc=99), (BOB, 5000))
        reactor.advance(gap)
    figures = session.counters()
    assert figures["a>b"]["packets"] == 8 and figures["a>b"]["bytes"] == 8 * 172
    assert figures["a>b"]["lost"] == 2 and figures["a>b"]["jitter_ms"] == pytest.approx(0.0, abs=1e-3)
    assert figures["b>a"]["packets"] == 5 and figures["b>a"]["lost"] == 0
    assert figures["b>a"]["jitter_ms"] == pytest.approx(0.568, abs=1e-3)  # the A.8 example
    assert figures["a>b"]["streams"][0]["index"] == 0


def test_clock_rate_of_the_answered_codec(engine, reactor):
    """Jitter in ms uses the answered codec's rtpmap clock (48 kHz Opus here)."""
    opus = ("a=rtpmap:111 opus/48000/2",)

    def with_opus(host: str, port: int) -> bytes:
        return sdp(host, port, *opus).replace(b"RTP/AVP 0 101", b"RTP/AVP 111 101").replace(
            b"a=rtpmap:0 PCMU/8000\r\n", b"")

    session = call(engine, a=with_opus(ALICE, 4000), b=with_opus(BOB, 5000))
    port_a = session.ports("a")[0]
    for seq, at in enumerate([0.0, 0.030, 0.040]):
        reactor.advance(at - reactor.seconds())
        reactor.deliver(port_a, rtp(seq, ts=seq * 960), (ALICE, 4000))
    assert session.counters()["a>b"]["jitter_ms"] == pytest.approx((10 / 16) + (10 - 10 / 16) / 16, abs=1e-3)


def test_busy_port_is_skipped_and_tried_again_later():
    """A port held by another program is passed over, and used once it is free."""
    reactor = FakeReactor(busy={30000})
    pool = PortPool(reactor, RELAY, 30000, 30005)
    first = pool.acquire(DatagramProtocol, DatagramProtocol)
    assert first.port == 30002
    reactor.busy.clear()
    assert [pool.acquire(DatagramProtocol, DatagramProtocol).port for _ in range(2)] == [30004, 30000]
    with pytest.raises(MediaUnavailable):
        pool.acquire(DatagramProtocol, DatagramProtocol)


def test_busy_rtcp_port_frees_the_rtp_one():
    """When the odd port is held, the even one is closed again and the pair skipped."""
    reactor = FakeReactor(busy={30001})
    pool = PortPool(reactor, RELAY, 30000, 30003)
    assert pool.acquire(DatagramProtocol, DatagramProtocol).port == 30002
    assert 30000 not in reactor.bound


def test_exhaustion_refuses_new_calls_and_recovers(reactor):
    """Two pairs: one call fits; the next is refused with MediaUnavailable and one
    warning however often it is tried, the call in progress still talks, and after it
    closes a new call gets ports."""
    engine = RelayEngine(reactor, RELAY, (30000, 30003))
    result(engine.start())
    warnings: list[dict] = []

    def observe(event: dict) -> None:
        if event.get("log_level") is LogLevel.warn and "exhausted" in event.get("log_format", ""):
            warnings.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        first = call(engine, name="first")
        for n in range(3):
            with pytest.raises(MediaUnavailable):
                engine.session(f"refused-{n}", lambda: None)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert len(warnings) == 1
    assert engine.totals()["refused"] == 3
    reactor.deliver(first.ports("a")[0], rtp(1), (ALICE, 4000))
    assert reactor.sent(first.ports("b")[0]) == [(rtp(1), (BOB, 5000))]
    result(first.close())
    assert reactor.bound == {} and engine.pool.in_use == 0
    again = call(engine, name="again")
    assert sorted(again.ports("a") + again.ports("b")) == [30000, 30002]


def test_offer_fails_when_the_second_side_gets_no_ports(reactor):
    """Three pairs and a two-stream offer: the second side's pair is missing, so the
    offer fails with MediaUnavailable and gives back what it took."""
    engine = RelayEngine(reactor, RELAY, (30000, 30005))
    result(engine.start())
    session = engine.session("c1", lambda: None)
    with pytest.raises(MediaUnavailable):
        result(session.offer("a", "b", sdp(ALICE, 4000, video=4002)))
    assert engine.pool.in_use == 0 and reactor.bound == {} and session.sides() == []
    result(session.offer("a", "b", sdp(ALICE, 4000)))  # one stream fits
    assert engine.pool.in_use == 2


def test_transfer_keeps_talking_then_repairs_and_releases(engine, reactor):
    """Offer to a third side c leaves a-b forwarding; c's answer pairs a-c, releases b's
    ports, and the a>b counters stay."""
    session = call(engine)
    port_a, port_b = session.ports("a")[0], session.ports("b")[0]
    reactor.deliver(port_a, rtp(1), (ALICE, 4000))
    assert len(reactor.sent(port_b)) == 1
    to_carol = result(session.offer("a", "c", sdp(ALICE, 4000)))
    port_c = session.ports("c")[0]
    assert ports_of(to_carol)[1] == [port_c]
    reactor.deliver(port_a, rtp(2), (ALICE, 4000))
    assert reactor.sent(port_b) == [(rtp(2), (BOB, 5000))] and reactor.sent(port_c) == []
    result(session.answer("c", "a", sdp(CAROL, 6000)))
    assert sorted(session.sides()) == ["a", "c"]
    assert port_b not in reactor.bound and port_b + 1 not in reactor.bound
    reactor.deliver(port_a, rtp(3), (ALICE, 4000))
    assert reactor.sent(port_c) == [(rtp(3), (CAROL, 6000))]
    reactor.deliver(port_c, rtp(1, ssrc=7), (CAROL, 6000))
    assert reactor.sent(port_a) == [(rtp(1, ssrc=7), (ALICE, 4000))]
    figures = session.counters()
    assert figures["a>b"]["packets"] == 2 and figures["a>c"]["packets"] == 1
    assert figures["c>a"]["packets"] == 1


def test_drop_releases_a_side(engine, reactor):
    """A transfer target that failed is dropped: its ports go back, the pair is untouched."""
    session = call(engine)
    result(session.offer("a", "c", sdp(ALICE, 4000)))
    port_c = session.ports("c")[0]
    result(session.drop("c"))
    assert port_c not in reactor.bound and sorted(session.sides()) == ["a", "b"]
    reactor.deliver(session.ports("a")[0], rtp(1), (ALICE, 4000))
    assert reactor.sent(session.ports("b")[0]) == [(rtp(1), (BOB, 5000))]


def test_hold_passes_through_and_forwarding_follows(engine, reactor):
    """Alice holds with a=sendonly: the direction reaches Bob unchanged, his recvonly
    reaches her, and her music on hold still flows to him."""
    session = call(engine)
    to_bob = result(session.offer("a", "b", sdp(ALICE, 4000, direction="sendonly")))
    assert b"a=sendonly" in to_bob
    to_alice = result(session.answer("b", "a", sdp(BOB, 5000, direction="recvonly")))
    assert b"a=recvonly" in to_alice
    reactor.deliver(session.ports("a")[0], rtp(1), (ALICE, 4000))
    assert reactor.sent(session.ports("b")[0]) == [(rtp(1), (BOB, 5000))]
    result(session.offer("a", "b", sdp(ALICE, 4000)))  # unhold
    result(session.answer("b", "a", sdp(BOB, 5000)))
    reactor.deliver(session.ports("b")[0], rtp(1), (BOB, 5000))
    assert reactor.sent(session.ports("a")[0]) == [(rtp(1), (ALICE, 4000))]


def test_rtp_timeout_fires_once_for_a_silent_call(engine, reactor):
    """No packet for rtp_timeout after the answer: on_timeout once, not again."""
    timeouts: list[str] = []
    call(engine, timeouts)
    reactor.advance(55)
    assert timeouts == []
    for _ in range(30):
        reactor.advance(5)
    assert timeouts == ["call-1"]


def test_media_keeps_the_call_alive(engine, reactor):
    """Packets one way every few seconds hold off the timeout; silence then ends it."""
    timeouts: list[str] = []
    session = call(engine, timeouts)
    for seq in range(40):  # 120 s of a packet every 3 s
        reactor.advance(3)
        reactor.deliver(session.ports("b")[0], rtp(seq), (BOB, 5000))
    assert timeouts == []
    reactor.advance(70)
    assert timeouts == ["call-1"]


def test_inactive_or_rejected_calls_are_not_timed_out(engine, reactor):
    """A call held with a=inactive both ways, or with every stream rejected, is quiet
    on purpose."""
    timeouts: list[str] = []
    call(engine, timeouts, name="held",
         a=sdp(ALICE, 4000, direction="inactive"), b=sdp(BOB, 5000, direction="inactive"))
    session = engine.session("rejected", lambda: timeouts.append("rejected"))
    result(session.offer("a", "b", sdp(ALICE, 4000)))
    result(session.answer("b", "a", sdp(BOB, 0)))
    reactor.advance(600)
    assert timeouts == []


def test_unhold_restarts_the_clock(engine, reactor):
    """After ten minutes on inactive hold, unhold gives the media rtp_timeout to start."""
    timeouts: list[str] = []
    session = call(engine, timeouts, a=sdp(ALICE, 4000, direction="inactive"),
                   b=sdp(BOB, 5000, direction="inactive"))
    reactor.advance(600)
    result(session.offer("a", "b", sdp(ALICE, 4000)))
    result(session.answer("b", "a", sdp(BOB, 5000)))
    reactor.advance(50)
    assert timeouts == []
    reactor.advance(20)
    assert timeouts == ["call-1"]


def test_close_is_idempotent_and_stop_closes_all(engine, reactor):
    """close() releases every port, twice is harmless; stop() closes what is left."""
    one = call(engine, name="one")
    call(engine, name="two")
    result(one.close())
    result(one.close())
    assert engine.pool.in_use == 2 and list(engine.sessions) == ["two"]
    with pytest.raises(MediaUnavailable):
        result(one.offer("a", "b", sdp(ALICE, 4000)))
    result(engine.stop())
    assert reactor.bound == {} and engine.sessions == {} and engine.pool.free == 10
    assert reactor.getDelayedCalls() == []


def test_unusable_sdp_fails_with_value_error(engine):
    """Not SDP, or a side sending to itself: the Deferred fails with ValueError."""
    session = engine.session("c1", lambda: None)
    with pytest.raises(ValueError):
        result(session.offer("a", "b", b"hello"))
    with pytest.raises(ValueError):
        result(session.offer("a", "a", sdp(ALICE, 4000)))
    assert engine.pool.in_use == 0


def test_hostname_or_unspecified_address_waits_for_latching(engine, reactor):
    """c=0.0.0.0 (old-style hold) gives no destination: nothing is sent until the
    party's own packets say where it is."""
    session = call(engine, b=sdp("0.0.0.0", 5000))
    port_a, port_b = session.ports("a")[0], session.ports("b")[0]
    reactor.deliver(port_a, rtp(1), (ALICE, 4000))
    assert reactor.sent(port_b) == []
    reactor.deliver(port_b, rtp(1), (BOB, 5002))
    reactor.deliver(port_a, rtp(2), (ALICE, 4000))
    assert reactor.sent(port_b) == [(rtp(2), (BOB, 5002))]


def test_junk_does_not_latch(engine, reactor):
    """A datagram that is not RTP version 2 (e.g. a STUN probe) neither latches nor passes."""
    session = call(engine)
    port_a, port_b = session.ports("a")[0], session.ports("b")[0]
    reactor.deliver(port_a, b"\x00\x01\x00\x00" + b"\x00" * 16, ("198.51.100.66", 4000))
    reactor.deliver(port_a, rtp(1), (ALICE, 4000))
    assert reactor.sent(port_b) == [(rtp(1), (BOB, 5000))]
    assert engine.malformed == 1


def test_rtcp_multiplexed_on_the_rtp_port_passes_uncounted_as_rtp(engine, reactor):
    """RTCP on the RTP port (rtcp-mux) is forwarded and counted as RTCP, not as a
    packet of the sequence."""
    session = call(engine)
    port_a, port_b = session.ports("a")[0], session.ports("b")[0]
    reactor.deliver(port_a, rtp(1), (ALICE, 4000))
    reactor.deliver(port_a, rtcp(), (ALICE, 4000))
    assert len(reactor.sent(port_b)) == 2
    figures = session.counters()["a>b"]
    assert (figures["packets"], figures["rtcp_packets"], figures["lost"]) == (1, 1, 0)


def test_delayed_offer_and_callee_reinvite(engine, reactor):
    """INVITE without SDP: Bob offers in the 200, Alice answers in the ACK; later Bob
    re-INVITEs. Media flows after each answer, whoever made it."""
    session = engine.session("c1", lambda: None)
    to_alice = result(session.offer("b", "a", sdp(BOB, 5000)))
    assert ports_of(to_alice)[1] == [session.ports("a")[0]]
    to_bob = result(session.answer("a", "b", sdp(ALICE, 4000)))
    assert ports_of(to_bob)[1] == [session.ports("b")[0]]
    reactor.deliver(session.ports("a")[0], rtp(1), (ALICE, 4000))
    assert reactor.sent(session.ports("b")[0]) == [(rtp(1), (BOB, 5000))]
    result(session.offer("b", "a", sdp(BOB, 5000, direction="sendonly")))
    result(session.answer("a", "b", sdp(ALICE, 4000, direction="recvonly")))
    reactor.deliver(session.ports("b")[0], rtp(1), (BOB, 5000))
    assert reactor.sent(session.ports("a")[0]) == [(rtp(1), (ALICE, 4000))]
    assert set(session.counters()) == {"a>b", "b>a"}


def test_rewritten_sdp_given_back_is_refused(engine):
    """SDP naming one of the relay's own ports would make it forward to itself: ValueError."""
    session = engine.session("c1", lambda: None)
    to_bob = result(session.offer("a", "b", sdp(ALICE, 4000)))
    with pytest.raises(ValueError, match="own port"):
        result(session.answer("b", "a", to_bob))
