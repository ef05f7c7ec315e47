"""The echo application on the wire: a SIPp caller's RTP comes back, and the switch hangs up.

SIPp places the call (its SDP names the port of a small UDP peer in this test); the
peer sends 100 PCMU packets to the address and port of the switch's SDP answer
(which SIPp writes to a file) and collects what comes back over 127.0.0.1.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from phpvoip.media.rtp import build_rtp
from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.rtp_phone import RtpPhone, poll
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

ECHO_PORTS = (31800, 31839)  # not the relay test's 31700-31739
MAX_DURATION = 4.0
PACKETS = 100
DEADLINE = 30.0


def payload(n: int) -> bytes:
    """A distinct 160-byte μ-law payload; 0x7F (-0, decoded as 0 and re-encoded 0xFF) is left out."""
    return bytes((n * 7 + i) % 0x7F for i in range(160))


@pytest_twisted.ensureDeferred
async def test_sipp_call_hears_itself_and_the_switch_hangs_up(reactor: Any, sipp: str, switch: Any,
                                                              peers: Any, tmp_path: Path) -> None:
    """100 PCMU packets sent to the echo's SDP address come back unchanged; BYE at max_duration."""
    service = await switch(
        "modules:\n"
        "  - type: trunk\n"  # lets the SIPp caller in; carries only 2xxx numbers out
        "    name: sipp\n"
        f"    address: {LOOPBACK}:{free_port()}\n"
        f"    allow: [{LOOPBACK}]\n"
        "    numbers: ['2*']\n"
        "  - type: echo\n"
        "    number: '9196'\n"
        f"    max_duration: {MAX_DURATION}\n"
        f"    ports: '{ECHO_PORTS[0]}-{ECHO_PORTS[1]}'\n"
    )
    peer = RtpPhone()
    rtp_port = free_port()
    listening = reactor.listenUDP(rtp_port, peer, interface=LOOPBACK)
    try:
        caller = peers.start(
            sipp_args(sipp, "echo_uac.xml", free_port(), service.port, "-s", "9196", "-m", "1",
                      "-key", "rtp_port", str(rtp_port), "-timeout", f"{int(DEADLINE) - 5}s",
                      "-timeout_error"),
            deadline=DEADLINE,
        )
        port_file = tmp_path / "echo_port.txt"
        text = await poll(reactor, lambda: port_file.exists() and port_file.read_text().strip(), 10.0)
        assert text, caller.output
        echo_port = int(text)
        answered_at = reactor.seconds()
        assert ECHO_PORTS[0] <= echo_port <= ECHO_PORTS[1]
        sent = [payload(n) for n in range(PACKETS)]
        for n, data in enumerate(sent):
            listening.write(build_rtp(0, n, n * 160, 0x5EED, data, n == 0), (LOOPBACK, echo_port))
            await task.deferLater(reactor, 0.02, lambda: None)
        await poll(reactor, lambda: len(peer.received) >= PACKETS, 3.0)
        assert peer.received == sent
        assert peer.sources == {(LOOPBACK, echo_port)}  # symmetric RTP: from the port it named
        assert await caller.wait() == 0, caller.output
        ended_after = reactor.seconds() - answered_at
    finally:
        await listening.stopListening()
    assert MAX_DURATION - 1.0 <= ended_after <= MAX_DURATION + 2.0
    record = service.engine.records[-1]
    assert (record.hangup_by, record.outbound_module) == ("callee", "echo")
    counts = await wait_idle(reactor, service.engine, 10.0)
    assert not any(counts.values()), counts
    # The endpoint let its port go when the call ended.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((LOOPBACK, echo_port))
