"""Media through the switch on the wire: two SIPp phones call each other through an
in-process switch with ``media: relay`` (or rtpengine); their RTP is sent and
received by the test's own UDP sockets on the ports their SDP names, and must flow
both ways through the switch, the call's counters matching what was sent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.test_rtpengine import Daemon, RtpEnd, local_port, wait_for
from tests.interop.test_trunk_flows import DEADLINE, trunk_config, wait_bound
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

RELAY_PORTS = "44600-44639"  # outside free_port()'s range and the other media tests'
RTPENGINE_PORTS = (44700, 44799)
TALK_MS = 2500
FROM_CALLER, FROM_CALLEE = 50, 40


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


def media_port(trace: str, first_line: str) -> tuple[str, int]:
    """(c= address, m=audio port) of the SDP in the message of a -trace_msg log that
    starts with `first_line`."""
    for chunk in re.split(r"^-{5,}.*$", trace, flags=re.M):
        lines = chunk.strip().splitlines()[1:]  # after "UDP message received [...] bytes :"
        body = "\n".join(lines).strip()
        if body.startswith(first_line):
            host = re.search(r"^c=IN IP4 (\S+)", body, re.M)
            port = re.search(r"^m=audio (\d+) ", body, re.M)
            assert host and port, body
            return host.group(1), int(port.group(1))
    raise AssertionError(f"no {first_line!r} in the trace:\n{trace[-3000:]}")


async def call_through(reactor: Any, sipp: str, switch: Any, peers: Any, tmp_path: Path, ends: Any,
                       media: str) -> tuple[Any, Any]:
    """Caller -> switch -> callee with test-owned RTP; RTP both ways while they talk.
    Returns the switch and the ended call's record."""
    caller_rtp, callee_rtp = ends
    uas_port = free_port()
    service = await switch(trunk_config(uas_port) + media)
    common = ("-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg")
    uas = peers.start(sipp_args(sipp, "media_uas.xml", uas_port, None, "-key", "rtpport",
                                str(local_port(callee_rtp)), *common), deadline=DEADLINE)
    await wait_bound(reactor, uas, uas_port)
    uac = peers.start(sipp_args(sipp, "media_uac.xml", free_port(), service.port, "-s", "2005", "-key",
                                "rtpport", str(local_port(caller_rtp)), "-d", str(TALK_MS),
                                *common), deadline=DEADLINE)
    engine = service.engine
    assert await wait_for(reactor, lambda: any(b.state.value == "answered" for b in engine.calls.values()),
                          10.0), uac.output
    [bridge] = engine.calls.values()
    # Where the switch told each phone to send: read back from the phones' own
    # logs once the call is over; meanwhile from the call's media session.
    session = bridge.session
    to_caller_side, to_callee_side = _relay_ports(session, media)
    caller_rtp.send(to_caller_side, FROM_CALLER, ssrc=0x1111)
    callee_rtp.send(to_callee_side, FROM_CALLEE, ssrc=0x2222)
    assert await wait_for(reactor, lambda: len(callee_rtp.received) >= FROM_CALLER
                          and len(caller_rtp.received) >= FROM_CALLEE, 5.0), (
        len(callee_rtp.received), len(caller_rtp.received))
    assert await uac.wait() == 0, uac.output
    assert await uas.wait() == 0, uas.output
    [record] = [r for r in engine.records if r.answer is not None]
    # Each phone hears the other only from the address its SDP was given.
    caller_trace = _trace(tmp_path, "media_uac")
    callee_trace = _trace(tmp_path, "media_uas")
    assert media_port(caller_trace, "SIP/2.0 200 OK") == (LOOPBACK, to_caller_side)
    assert media_port(callee_trace, "INVITE sip:") == (LOOPBACK, to_callee_side)
    assert {addr for _, addr in caller_rtp.received} == {(LOOPBACK, to_caller_side)}
    assert {addr for _, addr in callee_rtp.received} == {(LOOPBACK, to_callee_side)}
    counts = await wait_idle(reactor, engine, 15.0)
    assert not any(counts.values()), counts
    return service, record


def _relay_ports(session: Any, media: str) -> tuple[int, int]:
    """The ports each phone was told to send to (the relay's sides a and b)."""
    if "relay" in media:
        return session.ports("a")[0], session.ports("b")[0]
    return 0, 0  # rtpengine: read from the traces instead (see the test)


def _trace(tmp_path: Path, scenario: str) -> str:
    [log] = list(tmp_path.glob(f"{scenario}_*_messages.log"))
    return log.read_text(errors="replace")


@pytest_twisted.ensureDeferred
async def test_sipp_call_through_the_relay(reactor: Any, sipp: str, switch: Any, peers: Any,
                                          tmp_path: Path, ends: Any) -> None:
    """Each phone is given the relay's address, hears the other through it only, and
    the call's record counts every packet each way; the ports go back at the end."""
    service, record = await call_through(reactor, sipp, switch, peers, tmp_path, ends,
                                         f'media: {{mode: relay, ports: "{RELAY_PORTS}", rtp_timeout: 30}}\n')
    caller_rtp, callee_rtp = ends
    assert len(callee_rtp.received) == FROM_CALLER and len(caller_rtp.received) == FROM_CALLEE
    assert record.media["a>b"]["packets"] == FROM_CALLER and record.media["b>a"]["packets"] == FROM_CALLEE
    assert record.media["a>b"]["lost"] == 0 and record.media["a>b"]["bytes"] == FROM_CALLER * 172
    relay = service.engine.media
    totals = relay.totals()
    assert totals["forwarded"] == FROM_CALLER + FROM_CALLEE
    assert (totals["port_pairs_in_use"], totals["sessions"]) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_sipp_call_through_rtpengine(reactor: Any, sipp: str, switch: Any, peers: Any,
                                           tmp_path: Path, ends: Any, rtpengine: Any) -> None:
    """The same call with ``media: rtpengine``: the phones are given rtpengine's ports
    and hear each other through them."""
    caller_rtp, callee_rtp = ends
    uas_port = free_port()
    service = await switch(trunk_config(uas_port) + f'media: {{mode: rtpengine, ng: "{rtpengine.ng}"}}\n')
    # The ports are bound once rtpengine has answered the switch's ping.
    assert await wait_for(reactor, lambda: service.running, 5.0)
    common = ("-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg")
    uas = peers.start(sipp_args(sipp, "media_uas.xml", uas_port, None, "-key", "rtpport",
                                str(local_port(callee_rtp)), *common), deadline=DEADLINE)
    await wait_bound(reactor, uas, uas_port)
    uac = peers.start(sipp_args(sipp, "media_uac.xml", free_port(), service.port, "-s", "2005", "-key",
                                "rtpport", str(local_port(caller_rtp)), "-d", str(TALK_MS),
                                *common), deadline=DEADLINE)
    engine = service.engine
    assert await wait_for(reactor, lambda: any(b.state.value == "answered" for b in engine.calls.values()),
                          10.0), uac.output
    # The callee's INVITE is in its log as soon as it arrived; the caller's 200 too.
    assert await wait_for(reactor, lambda: "SIP/2.0 200 OK" in _trace(tmp_path, "media_uac"), 5.0)
    host_a, to_caller_side = media_port(_trace(tmp_path, "media_uac"), "SIP/2.0 200 OK")
    host_b, to_callee_side = media_port(_trace(tmp_path, "media_uas"), "INVITE sip:")
    assert host_a == host_b == LOOPBACK
    assert rtpengine.in_range(to_caller_side) and rtpengine.in_range(to_callee_side)
    caller_rtp.send(to_caller_side, FROM_CALLER, ssrc=0x1111)
    callee_rtp.send(to_callee_side, FROM_CALLEE, ssrc=0x2222)
    assert await wait_for(reactor, lambda: len(callee_rtp.received) >= FROM_CALLER
                          and len(caller_rtp.received) >= FROM_CALLEE, 5.0), (
        len(callee_rtp.received), len(caller_rtp.received))
    assert await uac.wait() == 0, uac.output
    assert await uas.wait() == 0, uas.output
    assert len(callee_rtp.received) == FROM_CALLER and len(caller_rtp.received) == FROM_CALLEE
    counts = await wait_idle(reactor, engine, 15.0)
    assert not any(counts.values()), counts
    assert engine.media.sessions == 0


def with_relay(switch: Any) -> Any:
    """The `switch` fixture with ``media: relay`` added to every config."""

    async def start(extra: str = "", **kwargs: Any) -> Any:
        return await switch(extra + f'media: {{mode: relay, ports: "{RELAY_PORTS}"}}\n', **kwargs)

    return start


def relay_port(port: str) -> bool:
    low, high = (int(p) for p in RELAY_PORTS.split("-"))
    return low <= int(port) <= high


@pytest_twisted.ensureDeferred
async def test_failed_transfer_through_the_relay(reactor: Any, sipp: str, switch: Any, peers: Any,
                                                 tmp_path: Path) -> None:
    """B REFERs A to a busy C: C was offered the relay's third side, which is released
    when C refuses; A and B stay on their relay ports and nothing is left bound."""
    from tests.interop.test_refer_sipp import run_transfer

    run = await run_transfer(reactor, sipp, with_relay(switch), peers, tmp_path,
                             a="uac_callee_bye.xml", b="refer_uas_transfer_fails.xml", c="uas_busy.xml",
                             c_over_tcp=True)
    assert not any(run.counts.values()), run.counts
    from tests.interop.test_trunk_flows import received

    (invite_b,) = received(run.logs["b"], "INVITE ")
    (invite_c,) = received(run.logs["c"], "INVITE ")
    port_b = invite_b.split("m=audio ", 1)[1].split()[0]
    port_c = invite_c.split("m=audio ", 1)[1].split()[0]
    assert relay_port(port_b) and relay_port(port_c) and port_b != port_c
    assert received(run.logs["a"], "INVITE ") == []
    (record,) = run.records
    assert record.transfers == [] and record.media["sides"] == {"a": "caller", "b": "callee", "c": "callee"}
    totals = run.service.engine.media.totals()
    assert (totals["port_pairs_in_use"], totals["sessions"]) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_transfer_through_the_relay(reactor: Any, sipp: str, switch: Any, peers: Any,
                                          tmp_path: Path) -> None:
    """B REFERs A to C: C is offered the relay's third side; once C answers, A keeps
    the relay ports it had, so it needs no re-INVITE; B's ports are released."""
    from tests.interop.test_refer_sipp import TARGET, run_transfer
    from tests.interop.test_trunk_flows import received

    run = await run_transfer(reactor, sipp, with_relay(switch), peers, tmp_path,
                             a="media_uac_talk.xml", b="refer_uas_transferor.xml",
                             c="refer_target_answer.xml")
    assert not any(run.counts.values()), run.counts
    (invite_c,) = received(run.logs["c"], "INVITE ")
    assert relay_port(invite_c.split("m=audio ", 1)[1].split()[0])
    assert received(run.logs["a"], "INVITE ") == []
    assert len(received(run.logs["c"], "BYE ")) == 1
    (record,) = run.records
    assert record.transfers == [TARGET] and record.hangup_by == "caller"
    assert record.media["sides"] == {"a": "caller", "b": "callee", "c": "callee"}
    totals = run.service.engine.media.totals()
    assert (totals["port_pairs_in_use"], totals["sessions"]) == (0, 0)


@pytest_twisted.ensureDeferred
async def test_no_relay_ports_refuses_503(reactor: Any, sipp: str, switch: Any, peers: Any) -> None:
    """A relay without two free port pairs refuses the caller 503 with Retry-After;
    the callee is never dialled."""
    uas_port = free_port()
    service = await switch(trunk_config(uas_port) + 'media: {mode: relay, ports: "44640-44641"}\n')
    caller = peers.start(sipp_args(sipp, "media_uac_refused.xml", free_port(), service.port, "-s", "2005",
                                   "-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error",
                                   "-trace_msg"),
                         deadline=DEADLINE)
    assert await caller.wait() == 0, caller.output
    (record,) = service.engine.records
    assert (record.status, record.hangup_by, record.outbound_module) == (503, "switch", "backend")
    assert service.engine.media.totals()["refused"] == 1
