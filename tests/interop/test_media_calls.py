"""Media call flows on the wire, through an in-process switch and real peers: SIPp
for the signalling, the test's own UDP sockets for the RTP.

- NAT: a caller whose RTP comes from another port than its SDP names is heard, and
  hears the callee back at that port (latching), through the relay and rtpengine.
- Hold and unhold by re-INVITE through the relay and rtpengine; RTP flows again after.
- ``rtp_timeout`` ends a silent call with a Reason on both legs, and not a live one
  (relay and rtpengine).
- DTMF to the echo application: RFC 4733 events for 0-9*# and SIP INFO digits are
  reported once each, with triple end packets and with every end packet lost.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.logger import globalLogPublisher

from tests.interop.conftest import sipp_args
from tests.interop.test_rtpengine import Daemon, RtpEnd, local_port, wait_for
from tests.interop.test_trunk_flows import CALL_STATE, DEADLINE, received, trunk_config, wait_bound
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

# Port ranges no other test uses (free_port() hands out 20000-32767).
RELAY_PORTS = "45300-45339"
RTPENGINE_PORTS = (45400, 45499)
ECHO_PORTS = "45340-45349"
BURST = 30  # packets each way per talk phase


@pytest.fixture
def sockets(reactor: Any):
    """``sockets(n)`` binds n RTP sockets on loopback; all are closed at teardown."""
    bound: list[Any] = []

    def make(n: int) -> list[RtpEnd]:
        ends = []
        for _ in range(n):
            end = RtpEnd()
            bound.append(reactor.listenUDP(0, end, interface=LOOPBACK))
            ends.append(end)
        return ends

    yield make
    for port in bound:
        port.stopListening()


@pytest.fixture(params=["relay", "rtpengine"])
def mode(request: Any, tmp_path: Path):
    """``mode(rtp_timeout)`` is the ``media:`` section of each mode; rtpengine mode
    starts its own daemon."""
    daemon = None
    if request.param == "rtpengine":
        daemon = Daemon(tmp_path, free_port(), RTPENGINE_PORTS)
        daemon.start()

    def section(rtp_timeout: float = 30) -> str:
        if daemon is None:
            return f'media: {{mode: relay, ports: "{RELAY_PORTS}", rtp_timeout: {rtp_timeout}}}\n'
        return f'media: {{mode: rtpengine, ng: "{daemon.ng}", rtp_timeout: {rtp_timeout}}}\n'

    yield section
    if daemon is not None:
        daemon.stop()


@pytest.fixture
def media(mode: Any) -> str:
    return mode()


def trace(tmp_path: Path, scenario: str) -> Path:
    [log] = list(tmp_path.glob(f"{scenario}_*_messages.log"))
    return log


async def start_call(reactor: Any, sipp: str, switch: Any, peers: Any, media: str, uac: str, uas: str,
                     caller_sdp_port: int, callee_port: int, *uac_extra: str, config: str = "") -> Any:
    """Switch (trunk to a SIPp callee) with `media`; SIPp callee then caller started
    with their SDP naming `callee_port` and `caller_sdp_port`. Returns (service,
    uac peer, uas peer) once the call is answered."""
    uas_port = free_port()
    service = await switch(trunk_config(uas_port) + media + config)
    assert await wait_for(reactor, lambda: service.running, 5.0)
    common = ("-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg")
    callee = peers.start(sipp_args(sipp, uas, uas_port, None, "-key", "rtpport", str(callee_port), *common),
                         deadline=DEADLINE)
    await wait_bound(reactor, callee, uas_port)
    caller = peers.start(sipp_args(sipp, uac, free_port(), service.port, "-s", "2005", "-key", "rtpport",
                                   str(caller_sdp_port), *uac_extra, *common), deadline=DEADLINE)
    engine = service.engine
    assert await wait_for(reactor, lambda: any(b.state.value == "answered" for b in engine.calls.values()),
                          10.0), caller.output
    return service, caller, callee


def answers(log: Path) -> list[str]:
    """The 200 OKs to INVITEs a SIPp peer received, in order."""
    return [m for m in received(log, "SIP/2.0 200 OK") if re.search(r"^CSeq:\s*\d+ INVITE", m, re.M)]


def media_address(message: str) -> tuple[str, int]:
    """(c= address, m=audio port) of a logged message's SDP."""
    host = re.search(r"^c=IN IP4 (\S+)", message, re.M)
    port = re.search(r"^m=audio (\d+) ", message, re.M)
    assert host and port, message
    return host.group(1), int(port.group(1))


async def relay_addresses(reactor: Any, tmp_path: Path, uac: str, uas: str, nth: int = 1) -> tuple[int, int]:
    """The ports the switch gave the caller (in its `nth` 200 to an INVITE) and the
    callee (in its `nth` INVITE), read from the SIPp traces; both on loopback."""
    assert await wait_for(reactor, lambda: len(answers(trace(tmp_path, uac))) >= nth
                          and len(received(trace(tmp_path, uas), "INVITE ")) >= nth, 10.0)
    host_a, to_caller_side = media_address(answers(trace(tmp_path, uac))[nth - 1])
    host_b, to_callee_side = media_address(received(trace(tmp_path, uas), "INVITE ")[nth - 1])
    assert host_a == host_b == LOOPBACK
    return to_caller_side, to_callee_side


async def call_gone(reactor: Any, engine: Any) -> None:
    """No call, leg or dialog is left (transactions linger for their RFC timers,
    which other tests check)."""
    def idle() -> bool:
        return not any(engine.counts()[k] for k in CALL_STATE)

    assert await wait_for(reactor, idle, 5.0), engine.counts()


async def finish(reactor: Any, service: Any, *sipps: Any) -> Any:
    """Both SIPp peers pass, nothing is left in the engine or the media engine;
    returns the answered call's record."""
    for peer in sipps:
        assert await peer.wait() == 0, peer.output
    engine = service.engine
    await call_gone(reactor, engine)
    if "relay" in type(engine.media).__name__.lower():
        totals = engine.media.totals()
        assert (totals["port_pairs_in_use"], totals["sessions"]) == (0, 0), totals
    else:
        assert await wait_for(reactor, lambda: engine.media.sessions == 0, 5.0)
    [record] = [r for r in engine.records if r.answer is not None]
    return record


@pytest_twisted.ensureDeferred
async def test_caller_behind_nat_is_heard_and_hears_back(reactor: Any, sipp: str, switch: Any, peers: Any,
                                                         tmp_path: Path, sockets: Any, media: str) -> None:
    """The caller's SDP names port X but its RTP leaves from port Y: the callee hears
    it, and the callee's RTP goes back to Y (latched), none to X."""
    decoy, nat, callee_rtp = sockets(3)  # X (in the SDP), Y (where RTP comes from), the callee
    service, uac, uas = await start_call(reactor, sipp, switch, peers, media, "media_uac.xml",
                                         "media_uas.xml",
                                         local_port(decoy), local_port(callee_rtp), "-d", "2500")
    to_caller_side, to_callee_side = await relay_addresses(reactor, tmp_path, "media_uac", "media_uas")
    nat.send(to_caller_side, BURST, ssrc=0xA1)
    assert await wait_for(reactor, lambda: len(callee_rtp.received) >= BURST, 3.0), len(callee_rtp.received)
    callee_rtp.send(to_callee_side, BURST, ssrc=0xB2)
    assert await wait_for(reactor, lambda: len(nat.received) >= BURST, 3.0), (len(nat.received),
                                                                              len(decoy.received))
    assert decoy.received == []
    assert {addr for _, addr in nat.received} == {(LOOPBACK, to_caller_side)}
    assert {addr for _, addr in callee_rtp.received} == {(LOOPBACK, to_callee_side)}
    assert len(nat.received) == len(callee_rtp.received) == BURST
    record = await finish(reactor, service, uac, uas)
    if "relay" in media:
        assert record.media["a>b"]["packets"] == BURST and record.media["b>a"]["packets"] == BURST


@pytest_twisted.ensureDeferred
async def test_hold_and_unhold_by_reinvite(reactor: Any, sipp: str, switch: Any, peers: Any,
                                           tmp_path: Path, sockets: Any, media: str) -> None:
    """RTP flows; the caller holds (a=sendonly): the callee is re-INVITEd with
    a=sendonly naming the relay; the caller unholds (a=sendrecv) and RTP flows both
    ways again through the same relay ports, the call's counters counting on."""
    caller_rtp, callee_rtp = sockets(2)
    service, uac, uas = await start_call(reactor, sipp, switch, peers, media, "media_uac_hold.xml",
                                         "media_uas_hold.xml", local_port(caller_rtp), local_port(callee_rtp))
    hold_uac, hold_uas = "media_uac_hold", "media_uas_hold"
    to_caller_side, to_callee_side = await relay_addresses(reactor, tmp_path, hold_uac, hold_uas)
    caller_rtp.send(to_caller_side, BURST, ssrc=0xA1)
    callee_rtp.send(to_callee_side, BURST, ssrc=0xB2)
    assert await wait_for(reactor, lambda: len(callee_rtp.received) >= BURST
                          and len(caller_rtp.received) >= BURST, 3.0)
    # Hold: the callee's re-INVITE says sendonly and still names the relay.
    held_a, held_b = await relay_addresses(reactor, tmp_path, hold_uac, hold_uas, nth=2)
    hold = received(trace(tmp_path, "media_uas_hold"), "INVITE ")[1]
    assert "a=sendonly" in hold and "a=sendrecv" not in hold, hold
    assert (held_a, held_b) == (to_caller_side, to_callee_side)
    # Unhold: sendrecv again, same ports, and RTP both ways with the sequence going on.
    again_a, again_b = await relay_addresses(reactor, tmp_path, hold_uac, hold_uas, nth=3)
    unhold = received(trace(tmp_path, "media_uas_hold"), "INVITE ")[2]
    assert "a=sendrecv" in unhold, unhold
    assert (again_a, again_b) == (to_caller_side, to_callee_side)
    caller_rtp.send(again_a, BURST, ssrc=0xA1, first_seq=BURST)
    callee_rtp.send(again_b, BURST, ssrc=0xB2, first_seq=BURST)
    assert await wait_for(reactor, lambda: len(callee_rtp.received) >= 2 * BURST
                          and len(caller_rtp.received) >= 2 * BURST, 3.0), (len(callee_rtp.received),
                                                                            len(caller_rtp.received))
    # (rtpengine may reorder a burst: its worker threads forward in parallel.)
    seqs = sorted(struct.unpack("!H", data[2:4])[0] for data, _ in callee_rtp.received)
    assert seqs == list(range(2 * BURST))
    record = await finish(reactor, service, uac, uas)
    if "relay" in media:
        assert record.media["a>b"]["packets"] == 2 * BURST and record.media["b>a"]["packets"] == 2 * BURST
        assert record.media["a>b"]["lost"] == 0 and record.media["b>a"]["lost"] == 0


@pytest_twisted.ensureDeferred
async def test_rtp_timeout_ends_a_silent_call(reactor: Any, sipp: str, switch: Any, peers: Any,
                                              tmp_path: Path, sockets: Any, mode: Any) -> None:
    """With ``rtp_timeout: 2`` a call with no RTP gets BYE on both legs with
    Reason SIP;cause=408;text="RTP timeout" (SIPp checks it) about 2 s after the answer,
    and its record says so."""
    caller_rtp, callee_rtp = sockets(2)
    media = mode(2)
    service, uac, uas = await start_call(reactor, sipp, switch, peers, media, "media_uac_silent.xml",
                                         "media_uas_silent.xml", local_port(caller_rtp),
                                         local_port(callee_rtp))
    answered = reactor.seconds()
    record = await finish(reactor, service, uac, uas)
    assert 1.5 <= record.end - record.answer <= 4.0, record.end - record.answer
    assert reactor.seconds() - answered < 8.0
    assert (record.hangup_by, record.cause, record.reason) == ("switch", "SIP;cause=408", "RTP timeout"), (
        record.hangup_by, record.cause, record.reason)
    assert caller_rtp.received == [] and callee_rtp.received == []


@pytest_twisted.ensureDeferred
async def test_rtp_timeout_spares_a_live_call(reactor: Any, sipp: str, switch: Any, peers: Any,
                                              tmp_path: Path, sockets: Any, mode: Any) -> None:
    """With ``rtp_timeout: 2`` a call whose RTP flows (50 packets/s each way) for
    4 s is not ended by the switch: the caller hangs up."""
    caller_rtp, callee_rtp = sockets(2)
    media = mode(2)
    service, uac, uas = await start_call(reactor, sipp, switch, peers, media, "media_uac.xml",
                                         "media_uas.xml",
                                         local_port(caller_rtp), local_port(callee_rtp), "-d", "4000")
    to_caller_side, to_callee_side = await relay_addresses(reactor, tmp_path, "media_uac", "media_uas")
    sent = 0

    def tick() -> None:
        nonlocal sent
        caller_rtp.send(to_caller_side, 1, ssrc=0xA1, first_seq=sent)
        callee_rtp.send(to_callee_side, 1, ssrc=0xB2, first_seq=sent)
        sent += 1

    loop = task.LoopingCall(tick)
    loop.start(0.02)
    try:
        record = await finish(reactor, service, uac, uas)
    finally:
        loop.stop()
    assert record.end - record.answer >= 3.5
    assert (record.hangup_by, record.cause) == ("caller", "Q.850;cause=16"), (record.hangup_by, record.cause)
    if "relay" in media:
        assert record.media["a>b"]["packets"] >= 150 and record.media["b>a"]["packets"] >= 150, record.media


def dtmf_packets(digits: str, ssrc: int, ends: int = 3, first_seq: int = 0,
                 first_timestamp: int = 0) -> list[bytes]:
    """RFC 4733 telephone-events for `digits` (payload type 101): three updates of
    each event, then its end packet `ends` times (3 as §2.5.1.4 asks; 0 when every
    end packet was lost), marker bit on each event's first packet, one timestamp per
    event, 100 ms between events."""
    codes = {**{str(n): n for n in range(10)}, "*": 10, "#": 11}
    packets = []
    seq, timestamp = first_seq, first_timestamp
    for digit in digits:
        for step in range(3 + ends):
            end = step >= 3
            duration = 160 * min(step + 1, 4)
            marker = 0x80 if step == 0 else 0
            header = struct.pack("!BBHII", 0x80, marker | 101, seq & 0xFFFF, timestamp, ssrc)
            payload = struct.pack("!BBH", codes[digit], (0x80 if end else 0) | 10, duration)
            packets.append(header + payload)
            seq += 1
        timestamp += 160 * 4 + 800
    return packets


@pytest_twisted.ensureDeferred
async def test_dtmf_to_the_echo_on_the_wire(reactor: Any, sipp: str, switch: Any, peers: Any,
                                            tmp_path: Path, sockets: Any) -> None:
    """RFC 4733 events for 0123456789*# from the caller's RTP port, first with triple
    end packets, then with every end packet lost, then SIP INFO digits 5 (dtmf-relay)
    and # (dtmf): the echo application logs each digit once, in order."""
    service = await switch(
        "calls: {keepalive_interval: 0}\n"
        "modules:\n"
        "  - type: trunk\n"
        "    name: sipp\n"
        f"    address: {LOOPBACK}:{free_port()}\n"
        f"    allow: [{LOOPBACK}]\n"
        "    numbers: ['2*']\n"
        "  - type: echo\n"
        "    number: '9196'\n"
        "    max_duration: 20\n"
        f"    ports: '{ECHO_PORTS}'\n"
    )
    digits: list[tuple[str, str]] = []

    def observe(event: dict) -> None:
        if str(event.get("log_format", "")).startswith("echo {name}: call {callID} digit"):
            digits.append((event["callID"], event["digit"]))

    globalLogPublisher.addObserver(observe)
    try:
        [rtp] = sockets(1)
        caller = peers.start(
            sipp_args(sipp, "echo_uac_digits.xml", free_port(), service.port, "-s", "9196", "-m", "1",
                      "-key", "rtp_port", str(local_port(rtp)), "-timeout", f"{int(DEADLINE) - 5}s",
                      "-timeout_error", "-trace_msg"),
            deadline=DEADLINE,
        )
        port_file = tmp_path / "echo_port.txt"
        assert await wait_for(reactor, lambda: port_file.exists() and port_file.read_text().strip(), 10.0), (
            caller.output)
        echo_port = int(port_file.read_text())
        triple = dtmf_packets("0123456789*#", ssrc=0xD7)
        # The second series goes on from the first's sequence numbers and timestamps.
        lost = dtmf_packets("0123456789*#", ssrc=0xD7, ends=0, first_seq=len(triple),
                            first_timestamp=12 * 1440)
        for packet in triple + lost:
            rtp.transport.write(packet, (LOOPBACK, echo_port))
            await task.deferLater(reactor, 0.005, lambda: None)
        # The last digit without an end packet is told at the endpoint's end timeout.
        assert await wait_for(reactor, lambda: len(digits) >= 24, 2.0), digits
        assert await caller.wait() == 0, caller.output
    finally:
        globalLogPublisher.removeObserver(observe)
    assert len({call for call, _ in digits}) == 1, digits
    assert "".join(d for _, d in digits) == "0123456789*#" * 2 + "5#"
    await call_gone(reactor, service.engine)
