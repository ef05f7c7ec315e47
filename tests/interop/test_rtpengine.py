"""The rtpengine media engine against a real rtpengine (userspace, loopback).

Each test starts its own daemon with its own ng port and RTP port range and stops
it by its PID. Two UDP sockets on 127.0.0.1 play the parties' RTP ends.
"""

from __future__ import annotations

import re
import signal
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.protocol import DatagramProtocol
from zope.interface.verify import verifyObject

from phpvoip.interfaces import IMediaEngine, IMediaSession, MediaUnavailable
from phpvoip.media.fallback import FallbackEngine
from phpvoip.media.rtpengine import RtpengineEngine
from tests.support import LOOPBACK, free_port, require_program, wait_udp_bound

pytestmark = pytest.mark.interop

# RTP port ranges of the daemons, inside the ephemeral range where no test hands
# out ports (rtpengine skips a port something else holds).
RANGES = [(44200, 44299), (44300, 44399)]
PAYLOAD = b"\xd5" * 160


class Daemon:
    """One rtpengine process in the foreground, stopped by its PID."""

    def __init__(self, workdir: Path, ng_port: int, ports: tuple[int, int]) -> None:
        self.ng_port = ng_port
        self.ports = ports
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def ng(self) -> str:
        return f"udp:{LOOPBACK}:{self.ng_port}"

    def command(self) -> list[str]:
        # --config-file=none: otherwise rtpengine also reads /etc/rtpengine/rtpengine.conf
        # and binds its CLI (2224) and HTTP (2225) ports, so a second daemon cannot start.
        return [
            require_program("rtpengine"), "--config-file=none", "--foreground", "--log-stderr", "--table=-1",
            f"--interface={LOOPBACK}", f"--listen-ng={LOOPBACK}:{self.ng_port}",
            f"--port-min={self.ports[0]}", f"--port-max={self.ports[1]}",
        ]

    def start(self) -> None:
        log = open(self.workdir / f"rtpengine-{self.ng_port}.log", "ab")
        self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_udp_bound(self.process, self.ng_port)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        # rtpengine takes a second or two to shut down after SIGTERM.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def in_range(self, port: int) -> bool:
        return self.ports[0] <= port <= self.ports[1]


@pytest.fixture
def daemons(tmp_path: Path):
    """``daemons(i)`` starts rtpengine number i (its own ng port and port range)."""
    started: list[Daemon] = []

    def start(index: int = 0) -> Daemon:
        daemon = Daemon(tmp_path, free_port(), RANGES[index])
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


class RtpEnd(DatagramProtocol):
    """A party's RTP socket: keeps what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.received.append((datagram, addr))

    def send(self, port: int, count: int, ssrc: int, first_seq: int = 0) -> None:
        for i in range(count):
            seq = first_seq + i
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, ssrc)
            self.transport.write(header + PAYLOAD, (LOOPBACK, port))


@pytest.fixture
def ends(reactor: Any):
    """Two RTP ends bound on loopback, closed at teardown."""
    ports = []
    protocols = []
    for _ in range(2):
        protocol = RtpEnd()
        ports.append(reactor.listenUDP(0, protocol, interface=LOOPBACK))
        protocols.append(protocol)
    yield protocols
    for port in ports:
        port.stopListening()


def sdp(port: int, direction: str = "sendrecv", version: int = 1) -> bytes:
    return (
        f"v=0\r\no=- 4242 {version} IN IP4 {LOOPBACK}\r\ns=-\r\nc=IN IP4 {LOOPBACK}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na={direction}\r\n"
    ).encode()


def media_port(body: bytes) -> int:
    """The m=audio port and check that c= is loopback."""
    assert re.search(rb"^c=IN IP4 127\.0\.0\.1\r?$", body, re.M), body
    match = re.search(rb"^m=audio (\d+) ", body, re.M)
    assert match, body
    return int(match.group(1))


def local_port(end: RtpEnd) -> int:
    return end.transport.getHost().port


async def wait_for(reactor: Any, predicate: Any, timeout: float = 5.0) -> bool:
    """Poll `predicate` (bounded) until it is true."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            return False
        await task.deferLater(reactor, 0.02, lambda: None)
    return True


async def set_up_call(session: Any, a: RtpEnd, b: RtpEnd) -> tuple[int, int]:
    """a offers, b answers; returns the rtpengine ports a and b send to."""
    to_b = await session.offer("a", "b", sdp(local_port(a)))
    to_a = await session.answer("b", "a", sdp(local_port(b)))
    return media_port(to_a), media_port(to_b)


@pytest_twisted.ensureDeferred
async def test_call_through_rtpengine(reactor, daemons, ends):
    """Offer/answer, RTP both ways, counters from query, re-INVITE from the callee, hold, delete."""
    daemon = daemons()
    engine = RtpengineEngine(reactor, ng=daemon.ng, timeout=0.5, retries=2, rtp_timeout=0)
    verifyObject(IMediaEngine, engine)
    await engine.start()
    assert engine.up
    timeouts: list[str] = []
    session = engine.session("call-1", lambda: timeouts.append("call-1"))
    verifyObject(IMediaSession, session)
    a, b = ends
    try:
        port_a, port_b = await set_up_call(session, a, b)
        assert daemon.in_range(port_a) and daemon.in_range(port_b) and port_a != port_b

        a.send(port_a, 20, ssrc=0x1111)
        b.send(port_b, 20, ssrc=0x2222)
        assert await wait_for(reactor, lambda: len(a.received) == 20 and len(b.received) == 20), \
            (len(a.received), len(b.received))
        assert {data[12:] for data, _ in a.received + b.received} == {PAYLOAD}
        assert {struct.unpack("!I", data[8:12])[0] for data, _ in b.received} == {0x1111}
        # Symmetric: rtpengine sends to each party from the port that party sends to.
        assert {addr[1] for _, addr in b.received} == {port_b}
        assert {addr[1] for _, addr in a.received} == {port_a}

        counters = await session.refresh()
        figures = {"packets": 20, "bytes": 20 * 172}  # rtpengine counts whole datagrams
        assert counters == {"a>b": figures, "b>a": figures}
        assert session.counters() == counters

        # A re-INVITE from the callee: an offer with the sides swapped; rtpengine keeps its ports.
        to_a = await session.offer("b", "a", sdp(local_port(b), version=2))
        to_b = await session.answer("a", "b", sdp(local_port(a), version=2))
        assert (media_port(to_a), media_port(to_b)) == (port_a, port_b)
        a.send(port_a, 5, ssrc=0x1111, first_seq=20)
        assert await wait_for(reactor, lambda: len(b.received) == 25)

        # Hold from the caller (sendonly, answered recvonly): the direction passes through,
        # and the caller's music still reaches the callee.
        to_b = await session.offer("a", "b", sdp(local_port(a), "sendonly", version=3))
        assert b"a=sendonly" in to_b and b"a=sendrecv" not in to_b
        to_a = await session.answer("b", "a", sdp(local_port(b), "recvonly", version=3))
        assert b"a=recvonly" in to_a
        a.send(port_a, 5, ssrc=0x1111, first_seq=25)
        assert await wait_for(reactor, lambda: len(b.received) == 30)
        # Unhold.
        to_b = await session.offer("a", "b", sdp(local_port(a), version=4))
        assert b"a=sendrecv" in to_b
        await session.answer("b", "a", sdp(local_port(b), version=4))

        # rtpengine refuses SDP it cannot parse: ValueError with its reason.
        with pytest.raises(ValueError, match="SDP"):
            await session.offer("a", "b", b"not an sdp")
    finally:
        await session.close()
    final = session.counters()
    assert (final["a>b"]["packets"], final["b>a"]["packets"]) == (30, 20), final
    await session.close()  # idempotent
    assert engine.sessions == 0
    # An answer for a call rtpengine never saw: its "Unknown call-id" as a ValueError.
    stray = engine.session("never-offered", lambda: None)
    with pytest.raises(ValueError, match="call-id"):
        await stray.answer("b", "a", sdp(local_port(b)))
    await stray.close()
    await engine.stop()
    assert timeouts == []


@pytest_twisted.ensureDeferred
async def test_delayed_offer_and_a_third_side(reactor, daemons, ends):
    """Delayed offer (the callee offers in its 200, the caller answers in the ACK), then the
    caller re-offers to a new side (a transfer): media flows each time."""
    daemon = daemons()
    engine = RtpengineEngine(reactor, ng=daemon.ng, timeout=0.5, retries=2, rtp_timeout=0)
    await engine.start()
    a, b = ends
    c = RtpEnd()
    c_port = reactor.listenUDP(0, c, interface=LOOPBACK)
    session = engine.session("delayed", lambda: None)
    try:
        to_a = media_port(await session.offer("b", "a", sdp(local_port(b))))
        to_b = media_port(await session.answer("a", "b", sdp(local_port(a))))
        a.send(to_a, 4, ssrc=0x5151)
        b.send(to_b, 4, ssrc=0x5252)
        assert await wait_for(reactor, lambda: len(a.received) == 4 and len(b.received) == 4)

        to_c = media_port(await session.offer("a", "c", sdp(local_port(a), version=2)))
        to_a = media_port(await session.answer("c", "a", sdp(local_port(c), version=2)))
        a.send(to_a, 3, ssrc=0x5151, first_seq=4)
        c.send(to_c, 3, ssrc=0x5353)
        assert await wait_for(reactor, lambda: len(c.received) == 3 and len(a.received) == 7)
        assert len(b.received) == 4
        counters = await session.refresh()
        assert counters["c>a"]["packets"] == 3
    finally:
        await session.close()
        c_port.stopListening()
        await engine.stop()


@pytest_twisted.ensureDeferred
async def test_start_fails_when_nothing_answers(reactor):
    """Nothing at the ng address: start() fails with a message naming it."""
    port = free_port()
    engine = RtpengineEngine(reactor, ng=f"udp:{LOOPBACK}:{port}", timeout=0.2, retries=1)
    message = rf"rtpengine at udp:127\.0\.0\.1:{port} does not answer ng ping"
    with pytest.raises(MediaUnavailable, match=message):
        await engine.start()
    assert not engine.up
    with pytest.raises(MediaUnavailable):
        engine.session("x", lambda: None)
    await engine.stop()


@pytest_twisted.ensureDeferred
async def test_rtp_timeout_ends_silent_calls_only(reactor, daemons, tmp_path):
    """A silent answered call times out once; one with RTP flowing and one fully inactive do not."""
    daemon = daemons()
    engine = RtpengineEngine(reactor, ng=daemon.ng, timeout=0.5, retries=2, rtp_timeout=2.0)
    await engine.start()
    timeouts: list[str] = []
    ends = [RtpEnd() for _ in range(6)]
    ports = [reactor.listenUDP(0, end, interface=LOOPBACK) for end in ends]
    talker = None
    try:
        silent = engine.session("silent", lambda: timeouts.append("silent"))
        await set_up_call(silent, ends[0], ends[1])
        talking = engine.session("talking", lambda: timeouts.append("talking"))
        port_a, _ = await set_up_call(talking, ends[2], ends[3])
        talker = task.LoopingCall(ends[2].send, port_a, 1, 0x3333)
        talker.clock = reactor
        talker.start(0.2)
        held = engine.session("held", lambda: timeouts.append("held"))
        await held.offer("a", "b", sdp(local_port(ends[4]), "inactive"))
        await held.answer("b", "a", sdp(local_port(ends[5]), "inactive"))
        # Detection takes rtp_timeout plus up to one polling period (rtp_timeout/3) and
        # rtpengine's one-second resolution.
        assert await wait_for(reactor, lambda: "silent" in timeouts, timeout=6.0)
        await task.deferLater(reactor, 1.5, lambda: None)
        assert timeouts == ["silent"]
        assert (await talking.refresh())["a>b"]["packets"] > 10
    finally:
        if talker is not None and talker.running:
            talker.stop()
        for port in ports:
            port.stopListening()
        await engine.stop()


@pytest_twisted.ensureDeferred
async def test_fallback_while_rtpengine_is_down(reactor, daemons, ends):
    """rtpengine stopped mid-test: new calls go to the fallback, the old call still closes,
    and once rtpengine answers again new calls go back to it."""
    first, second = daemons(0), daemons(1)
    primary = RtpengineEngine(reactor, ng=first.ng, timeout=0.2, retries=1, rtp_timeout=0, ping_interval=0.5)
    spare = RtpengineEngine(reactor, ng=second.ng, timeout=0.5, retries=2, rtp_timeout=0)
    engine = FallbackEngine(primary, spare)
    verifyObject(IMediaEngine, engine)
    await engine.start()
    a, b = ends
    try:
        before = engine.session("before", lambda: None)
        verifyObject(IMediaSession, before)
        port_a, _ = await set_up_call(before, a, b)
        assert first.in_range(port_a)

        first.stop()
        # The primary has not noticed yet: the first offer times out there and is
        # made again on the fallback.
        during = engine.session("during", lambda: None)
        port_a, port_b = await set_up_call(during, a, b)
        assert second.in_range(port_a) and second.in_range(port_b)
        assert not primary.up
        # Now it is marked down: new calls go straight to the fallback.
        after = engine.session("after", lambda: None)
        port_a, _ = await set_up_call(after, a, b)
        assert second.in_range(port_a)
        assert engine.fallen_back == 2
        with pytest.raises(MediaUnavailable):
            primary.session("direct", lambda: None)
        a.send(port_a, 3, ssrc=0x4444)
        assert await wait_for(reactor, lambda: len(b.received) == 3)

        # The call set up before still closes (the delete fails, is logged, not raised).
        await before.close()
        await during.close()
        await after.close()

        first.start()  # same ng port: the probe finds it again
        assert await wait_for(reactor, lambda: primary.up, timeout=5.0)
        again = engine.session("again", lambda: None)
        port_a, _ = await set_up_call(again, a, b)
        assert first.in_range(port_a)
        await again.close()
    finally:
        await engine.stop()


def test_preflight_ping(daemons):
    """The launcher's blocking ping: None from a live rtpengine, a sentence naming
    the address from a port where nothing answers."""
    from phpvoip.media.ng import ping_before_start

    daemon = daemons()
    assert ping_before_start(daemon.ng, timeout=1.0, retries=2) is None
    dead = f"udp:{LOOPBACK}:{free_port()}"
    assert ping_before_start(dead, timeout=0.2, retries=1) == f"rtpengine at {dead} does not answer ng ping"


def test_twistd_refuses_to_start_without_rtpengine(tmp_path):
    """`twistd phpvoip` with `media: {mode: rtpengine}` and nothing at `ng` exits
    non-zero with the file, the key and the reason, before binding SIP."""
    import os
    import socket
    import sys

    sip_port, ng_port = free_port(), free_port()
    config = tmp_path / "phpvoip.yaml"
    config.write_text(
        f"sip: {{listen: ['udp:{LOOPBACK}:{sip_port}'], domain: {LOOPBACK}}}\n"
        "storage: 'memory:'\n"
        f"media: {{mode: rtpengine, ng: 'udp:{LOOPBACK}:{ng_port}', timeout: 0.2, retries: 1}}\n"
        "modules: []\n"
    )
    twistd = Path(sys.executable).parent / "twistd"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [str(twistd), "-n", "--pidfile=", "phpvoip", "-c", str(config)], cwd=tmp_path,
        capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(root)),
    )  # fmt: skip
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{config}: media: rtpengine at udp:{LOOPBACK}:{ng_port} does not answer ng ping" in output
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, sip_port))  # never bound by the switch: free now
