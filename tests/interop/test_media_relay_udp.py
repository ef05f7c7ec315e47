"""The relay on real UDP sockets on 127.0.0.1: two "phones" in the test's reactor
exchange 500 RTP packets each way (and RTCP) through a RelayEngine. The caller sends
from another port than its SDP names (NAT) and is still heard; the counters match
what was sent; a stranger is not heard; silence afterwards ends the call."""

from __future__ import annotations

import struct

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

from phpvoip.media.relay import RelayEngine
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

PACKETS = 500
PAYLOAD = b"\xd5" * 160  # 20 ms of A-law silence
RELAY_PORTS = (31700, 31739)  # 20 pairs; a port held by someone else is skipped
DEADLINE = 10.0


class Phone(DatagramProtocol):
    """Sends numbered RTP and records what it hears (and from where)."""

    def __init__(self, ssrc: int) -> None:
        self.ssrc = ssrc
        self.heard: list[int] = []
        self.sources: set[tuple[str, int]] = set()
        self.rtcp_heard = 0

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sources.add(addr)
        if 192 <= data[1] <= 223:
            self.rtcp_heard += 1
        else:
            self.heard.append(struct.unpack_from("!H", data, 2)[0])

    def packet(self, seq: int) -> bytes:
        return struct.pack("!BBHII", 0x80, 8, seq, seq * 160, self.ssrc) + PAYLOAD


def sdp(port: int, rtcp_port: int) -> bytes:
    return (f"v=0\r\no=- 7 7 IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=rtcp:{rtcp_port}\r\n"
            "a=sendrecv\r\n").encode()


def rtcp(ssrc: int) -> bytes:
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


async def until(reactor, condition, what: str) -> None:
    """Wait (bounded by DEADLINE) for `condition()`."""
    deadline = reactor.seconds() + DEADLINE
    while not condition():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


async def blast(reactor, send, count: int, burst: int = 5) -> None:
    """`send(seq)` for seq 0..count-1, a few at a time, so no socket buffer overflows."""
    for start in range(0, count, burst):
        for seq in range(start, min(start + burst, count)):
            send(seq)
        await task.deferLater(reactor, 0.001, lambda: None)


@pytest_twisted.ensureDeferred
async def test_relay_carries_rtp_both_ways_with_a_natted_caller(reactor):
    """500 packets each way arrive in full and in order, the counters say so, the
    NAT'ed caller hears the callee, a stranger is dropped, and silence ends the call."""
    timed_out: defer.Deferred = defer.Deferred()
    engine = RelayEngine(reactor, LOOPBACK, RELAY_PORTS, rtp_timeout=2.0)
    await engine.start()
    alice, bob = Phone(0xA11CE), Phone(0xB0B)
    alice_rtp = reactor.listenUDP(0, alice, interface=LOOPBACK)
    alice_rtcp_phone = Phone(0xA11CE)
    alice_rtcp = reactor.listenUDP(0, alice_rtcp_phone, interface=LOOPBACK)
    bob_port, bob_rtcp_port = free_port(), free_port()  # RTCP named by a=rtcp (RFC 3605)
    bob_rtp = reactor.listenUDP(bob_port, bob, interface=LOOPBACK)
    bob_rtcp_phone = Phone(0xB0B)
    bob_rtcp = reactor.listenUDP(bob_rtcp_port, bob_rtcp_phone, interface=LOOPBACK)
    stranger_phone = Phone(0xBAD)
    stranger = reactor.listenUDP(0, stranger_phone, interface=LOOPBACK)
    listening = [alice_rtp, alice_rtcp, bob_rtp, bob_rtcp, stranger]
    try:
        session = engine.session("wire-1", lambda: timed_out.callback(reactor.seconds()))
        # Alice's SDP names a port she does not send from: only latching finds her.
        said = free_port()
        to_bob = await session.offer("a", "b", sdp(said, said + 1))
        to_alice = await session.answer("b", "a", sdp(bob_port, bob_rtcp_port))
        relay_a, relay_b = session.ports("a")[0], session.ports("b")[0]
        assert f"m=audio {relay_b} ".encode() in to_bob and f"m=audio {relay_a} ".encode() in to_alice
        assert f"c=IN IP4 {LOOPBACK}".encode() in to_alice

        # Alice speaks first (latching her real source), then both at once.
        alice_rtp.write(alice.packet(0), (LOOPBACK, relay_a))
        await until(reactor, lambda: len(bob.heard) == 1, "Alice's first packet at Bob")

        def both(seq: int) -> None:
            if seq:
                alice_rtp.write(alice.packet(seq), (LOOPBACK, relay_a))
            bob_rtp.write(bob.packet(seq), (LOOPBACK, relay_b))

        await blast(reactor, both, PACKETS)
        for _ in range(3):
            alice_rtcp.write(rtcp(alice.ssrc), (LOOPBACK, relay_a + 1))
            bob_rtcp.write(rtcp(bob.ssrc), (LOOPBACK, relay_b + 1))
        stranger.write(stranger_phone.packet(1), (LOOPBACK, relay_a))
        await until(reactor, lambda: len(alice.heard) == PACKETS and len(bob.heard) == PACKETS
                    and alice_rtcp_phone.rtcp_heard == 3 and bob_rtcp_phone.rtcp_heard == 3
                    and engine.unlatched == 1, "every packet")
        silent_since = reactor.seconds()

        assert bob.heard == list(range(PACKETS)) and alice.heard == list(range(PACKETS))
        assert alice.sources == {(LOOPBACK, relay_a)} and bob.sources == {(LOOPBACK, relay_b)}
        assert alice_rtcp_phone.sources == {(LOOPBACK, relay_a + 1)}
        figures = session.counters()
        for direction in ("a>b", "b>a"):
            assert figures[direction]["packets"] == PACKETS
            assert figures[direction]["bytes"] == PACKETS * (12 + len(PAYLOAD))
            assert figures[direction]["lost"] == 0
            assert figures[direction]["rtcp_packets"] == 3
            assert figures[direction]["jitter_ms"] >= 0.0
        assert figures["a>b"]["dropped"] == 1 and stranger_phone.heard == []
        assert engine.forwarded == 2 * PACKETS + 6

        # Silence from now on: the timeout check (every 0.5 s) ends the call once.
        at = await timed_out
        assert 2.0 - 0.1 <= at - silent_since <= 2.0 + 0.5 + 1.0
        await session.close()
        assert engine.pool.in_use == 0
    finally:
        await engine.stop()
        for port in listening:
            await defer.maybeDeferred(port.stopListening)
