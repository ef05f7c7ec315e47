"""An application written on phpvoip.apps.base, on the wire with SIPp.

The application, defined here, answers, plays a tone, collects two digits and
bridges the caller to a SIPp callee. The SIPp caller's SDP names this test's own
UDP socket, which checks that the tone arrives and sends the two digits as RFC 4733
telephone-events from there (one packet every 20 ms, as a phone does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from phpvoip.apps.base import Application, AppSettings
from phpvoip.media.tones import tone
from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.rtp_phone import RtpPhone, poll
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

APP_PORTS = (46100, 46139)  # no other test's range
DEADLINE = 40.0


class Menu(Application):
    """Answer, play a tone, collect two digits, bridge to 2100."""

    def __init__(self, ports: tuple[int, int]) -> None:
        super().__init__("menu", AppSettings(number="600", ports=ports, max_duration=60))
        self.log: list[Any] = []

    async def run(self, call: Any) -> None:
        await call.answer()
        await call.play(tone((600.0,), 3.0), interruptible=True)
        digits = await call.collect(max_digits=2, timeout=10)
        self.log.append(digits)
        self.log.append(await call.bridge("2100", ring_timeout=10))


@pytest_twisted.ensureDeferred
async def test_app_plays_collects_rfc4733_digits_and_bridges(reactor: Any, sipp: str, switch: Any, peers: Any,
                                                             tmp_path: Path) -> None:
    """The caller hears the tone, its digits 4 and 2 reach collect(), and it is bridged to 2100's SIPp."""
    callee_port = free_port()
    service = await switch(
        "modules:\n"
        "  - type: trunk\n"  # lets the SIPp caller in; carries no number out
        "    name: callers\n"
        f"    address: {LOOPBACK}:{free_port()}\n"
        f"    allow: [{LOOPBACK}]\n"
        "    numbers: ['9999']\n"
        "  - type: trunk\n"
        "    name: callee\n"
        f"    address: {LOOPBACK}:{callee_port}\n"
        "    allow: [192.0.2.1]\n"
        "    numbers: ['2100']\n"
    )
    engine = service.engine
    app = Menu(APP_PORTS)
    await engine.swap_modules([*engine.modules, app], start=[app])
    uas = peers.start(sipp_args(sipp, "app_uas.xml", callee_port, None, "-s", "2100", "-m", "1",
                                "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error"), deadline=DEADLINE)
    phone = RtpPhone()
    rtp_port = free_port()
    listening = reactor.listenUDP(rtp_port, phone, interface=LOOPBACK)
    try:
        caller = peers.start(
            sipp_args(sipp, "app_uac.xml", free_port(), service.port, "-s", "600", "-m", "1",
                      "-key", "rtp_port", str(rtp_port), "-timeout", f"{int(DEADLINE) - 5}s",
                      "-timeout_error"),
            deadline=DEADLINE,
        )
        port_file = tmp_path / "app_port.txt"
        text = await poll(reactor, lambda: port_file.exists() and port_file.read_text().strip(), 10.0)
        assert text, caller.output
        port = int(text)
        assert APP_PORTS[0] <= port <= APP_PORTS[1]
        assert await poll(reactor, lambda: phone.heard >= 10, 3.0), "no tone heard"
        await phone.press(reactor, port, "42")
        assert await uas.wait() == 0, uas.output
        assert await caller.wait() == 0, caller.output
    finally:
        await listening.stopListening()
    assert app.log == ["42", "2100"]
    record = engine.records[-1]
    assert record.transfers == ["2100"] and record.outbound_module == "callee"
    counts = await wait_idle(reactor, engine, 10.0)
    assert not any(counts.values()), counts
    assert app.stats() == {"in_progress": 0, "total": 1, "failed": 0}
