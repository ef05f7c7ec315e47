"""Delayed offer on the wire (RFC 3261 §13.2.1, RFC 3264 §5): a SIPp caller sends an
INVITE without SDP; the SIPp callee offers in its 200 and checks that its ACK carries
the answer. Directly (SDP untouched) and through the relay (each phone sees only the
relay's ports), with RTP both ways from the test's own UDP sockets; and a call without
SDP to the echo (9196), whose RTP comes back."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from phpvoip.media.rtp import build_rtp
from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.rtp_phone import RtpPhone, poll
from tests.interop.test_echo_sipp import payload
from tests.interop.test_media_relay_sipp import media_port
from tests.interop.test_rtpengine import Daemon, RtpEnd, local_port, wait_for
from tests.interop.test_trunk_flows import DEADLINE, trunk_config, wait_bound
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

RELAY_PORTS = "45600-45639"  # outside free_port()'s range and the other media tests'
RTPENGINE_PORTS = (45640, 45699)
ECHO_PORTS = (31900, 31919)  # not the echo test's 31800-31839 nor the relay test's 31700-31739
TALK_MS = 2000
FROM_CALLER, FROM_CALLEE = 30, 20


@pytest.fixture
def ends(reactor: Any):
    """The two phones' RTP sockets on loopback, closed at teardown."""
    ports, protocols = [], []
    for _ in range(2):
        protocol = RtpEnd()
        ports.append(reactor.listenUDP(0, protocol, interface=LOOPBACK))
        protocols.append(protocol)
    yield protocols
    for port in ports:
        port.stopListening()


@pytest.fixture
def rtpengine(tmp_path: Path):
    """One rtpengine daemon on its own ng port and port range."""
    daemon = Daemon(tmp_path, free_port(), RTPENGINE_PORTS)
    daemon.start()
    yield daemon
    daemon.stop()


def _trace(tmp_path: Path, scenario: str) -> str:
    logs = list(tmp_path.glob(f"{scenario}_*_messages.log"))
    return logs[0].read_text(errors="replace") if logs else ""


def message(trace: str, first_line: str) -> str:
    """The first message of a -trace_msg log that starts with `first_line`."""
    for chunk in re.split(r"^-{5,}.*$", trace, flags=re.M):
        text = "\n".join(chunk.strip().splitlines()[1:]).strip()
        if text.startswith(first_line):
            return text
    raise AssertionError(f"no {first_line!r} in the trace:\n{trace[-3000:]}")


async def delayed_call(reactor: Any, sipp: str, switch: Any, peers: Any, tmp_path: Path, ends: Any,
                       media: str) -> dict[str, Any]:
    """Caller (no SDP) -> switch -> callee (offers in its 200); RTP both ways to where
    each phone's SDP was told to send. Returns what the checks need."""
    caller_rtp, callee_rtp = ends
    uas_port = free_port()
    service = await switch(trunk_config(uas_port) + media)
    # With rtpengine the ports are bound once it has answered the switch's ping.
    assert await wait_for(reactor, lambda: service.running, 5.0)
    common = ("-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg")
    uas = peers.start(sipp_args(sipp, "delayed_uas.xml", uas_port, None, "-key", "rtpport",
                                str(local_port(callee_rtp)), *common), deadline=DEADLINE)
    await wait_bound(reactor, uas, uas_port)
    uac = peers.start(sipp_args(sipp, "delayed_uac.xml", free_port(), service.port, "-s", "2005", "-key",
                                "rtpport", str(local_port(caller_rtp)), "-d", str(TALK_MS), *common),
                      deadline=DEADLINE)
    engine = service.engine
    # The callee's ACK (with the caller's answer) is the last step of the set-up.
    assert await wait_for(reactor, lambda: "ACK sip:" in _trace(tmp_path, "delayed_uas"), 10.0), uac.output
    [bridge] = engine.calls.values()
    session = bridge.session
    relay_sides = (session.ports("a")[0], session.ports("b")[0]) if hasattr(session, "ports") else None
    caller_200 = message(_trace(tmp_path, "delayed_uac"), "SIP/2.0 200 OK")
    callee_ack = message(_trace(tmp_path, "delayed_uas"), "ACK sip:")
    to_caller_side = media_port(_trace(tmp_path, "delayed_uac"), "SIP/2.0 200 OK")
    to_callee_side = media_port(_trace(tmp_path, "delayed_uas"), "ACK sip:")
    caller_rtp.send(to_caller_side[1], FROM_CALLER, ssrc=0x1111)
    callee_rtp.send(to_callee_side[1], FROM_CALLEE, ssrc=0x2222)
    assert await wait_for(reactor, lambda: len(callee_rtp.received) >= FROM_CALLER
                          and len(caller_rtp.received) >= FROM_CALLEE, 5.0), (
        len(callee_rtp.received), len(caller_rtp.received))
    assert await uac.wait() == 0, uac.output
    assert await uas.wait() == 0, uas.output
    callee_invite = message(_trace(tmp_path, "delayed_uas"), "INVITE sip:")
    assert "m=audio" not in callee_invite and re.search(r"^Content-Length: *0\s*$", callee_invite, re.M)
    [record] = [r for r in engine.records if r.answer is not None]
    counts = await wait_idle(reactor, engine, 15.0)
    assert not any(counts.values()), counts
    return {"service": service, "record": record, "caller_200": caller_200, "callee_ack": callee_ack,
            "to_caller_side": to_caller_side, "to_callee_side": to_callee_side, "relay_sides": relay_sides}


@pytest_twisted.ensureDeferred
async def test_delayed_offer_direct(reactor: Any, sipp: str, switch: Any, peers: Any, tmp_path: Path,
                                    ends: Any) -> None:
    """media: direct: the caller's 200 is the callee's offer and the callee's ACK the
    caller's answer, unchanged; each phone's RTP reaches the other directly."""
    run = await delayed_call(reactor, sipp, switch, peers, tmp_path, ends, "media: {mode: direct}\n")
    caller_rtp, callee_rtp = ends
    assert "s=uas-offer-1" in run["caller_200"] and "s=uac-answer-1" in run["callee_ack"]
    assert run["to_caller_side"] == (LOOPBACK, local_port(callee_rtp))
    assert run["to_callee_side"] == (LOOPBACK, local_port(caller_rtp))
    assert len(callee_rtp.received) == FROM_CALLER and len(caller_rtp.received) == FROM_CALLEE
    assert run["relay_sides"] is None


@pytest_twisted.ensureDeferred
async def test_delayed_offer_through_the_relay(reactor: Any, sipp: str, switch: Any, peers: Any,
                                               tmp_path: Path, ends: Any) -> None:
    """media: relay: the caller's 200 offers the relay's side a, the callee's ACK answers
    with the relay's side b; RTP goes through the relay both ways, counted on the record."""
    run = await delayed_call(reactor, sipp, switch, peers, tmp_path, ends,
                             f'media: {{mode: relay, ports: "{RELAY_PORTS}", rtp_timeout: 30}}\n')
    caller_rtp, callee_rtp = ends
    side_a, side_b = run["relay_sides"]
    assert run["to_caller_side"] == (LOOPBACK, side_a)
    assert run["to_callee_side"] == (LOOPBACK, side_b)
    assert {addr for _, addr in caller_rtp.received} == {(LOOPBACK, side_a)}
    assert {addr for _, addr in callee_rtp.received} == {(LOOPBACK, side_b)}
    assert len(callee_rtp.received) == FROM_CALLER and len(caller_rtp.received) == FROM_CALLEE
    media = run["record"].media
    assert media["a>b"]["packets"] == FROM_CALLER and media["b>a"]["packets"] == FROM_CALLEE
    totals = run["service"].engine.media.totals()
    assert (totals["port_pairs_in_use"], totals["sessions"]) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_delayed_offer_through_rtpengine(reactor: Any, sipp: str, switch: Any, peers: Any,
                                               tmp_path: Path, ends: Any, rtpengine: Any) -> None:
    """media: rtpengine: the callee's offer goes to rtpengine as an offer from b, the
    caller's ACK answer as an answer from a; each phone is given rtpengine's ports
    and hears the other through them."""
    run = await delayed_call(reactor, sipp, switch, peers, tmp_path, ends,
                             f'media: {{mode: rtpengine, ng: "{rtpengine.ng}"}}\n')
    caller_rtp, callee_rtp = ends
    (host_a, port_a), (host_b, port_b) = run["to_caller_side"], run["to_callee_side"]
    assert host_a == host_b == LOOPBACK
    assert rtpengine.in_range(port_a) and rtpengine.in_range(port_b) and port_a != port_b
    assert len(callee_rtp.received) == FROM_CALLER and len(caller_rtp.received) == FROM_CALLEE
    assert run["service"].engine.media.sessions == 0


@pytest_twisted.ensureDeferred
async def test_delayed_offer_to_the_echo(reactor: Any, sipp: str, switch: Any, peers: Any,
                                         tmp_path: Path) -> None:
    """A call to 9196 without SDP: the echo offers in its 200, the ACK's answer names the
    test's UDP peer, and the packets it sends to the offered port come back unchanged."""
    service = await switch(
        "media: {mode: direct}\n"
        "modules:\n"
        "  - type: trunk\n"
        "    name: sipp\n"
        f"    address: {LOOPBACK}:{free_port()}\n"
        f"    allow: [{LOOPBACK}]\n"
        "    numbers: ['2*']\n"
        "  - type: echo\n"
        "    number: '9196'\n"
        "    max_duration: 3\n"
        f"    ports: '{ECHO_PORTS[0]}-{ECHO_PORTS[1]}'\n"
    )
    peer = RtpPhone()
    rtp_port = free_port()
    listening = reactor.listenUDP(rtp_port, peer, interface=LOOPBACK)
    try:
        caller = peers.start(
            sipp_args(sipp, "echo_uac_delayed.xml", free_port(), service.port, "-s", "9196", "-m", "1",
                      "-key", "rtp_port", str(rtp_port), "-timeout", f"{int(DEADLINE) - 5}s",
                      "-timeout_error"),
            deadline=DEADLINE,
        )
        port_file = tmp_path / "echo_port.txt"
        text = await poll(reactor, lambda: port_file.exists() and port_file.read_text().strip(), 10.0)
        assert text, caller.output
        echo_port = int(text)
        assert ECHO_PORTS[0] <= echo_port <= ECHO_PORTS[1]
        sent = [payload(n) for n in range(50)]
        for n, data in enumerate(sent):
            listening.write(build_rtp(0, n, n * 160, 0xDE1A, data, n == 0), (LOOPBACK, echo_port))
            await poll(reactor, lambda: False, 0.02)
        await poll(reactor, lambda: len(peer.received) >= len(sent), 3.0)
        assert peer.received == sent
        assert peer.sources == {(LOOPBACK, echo_port)}
        assert await caller.wait() == 0, caller.output
    finally:
        await listening.stopListening()
    record = service.engine.records[-1]
    assert (record.hangup_by, record.outbound_module) == ("callee", "echo")
    counts = await wait_idle(reactor, service.engine, 10.0)
    assert not any(counts.values()), counts
