"""The auto attendant on the wire: SIPp callers press real RFC 4733 digits and are bridged
to SIPp extensions.

The caller's SDP names the port of this test's own UDP socket; once SIPp has the
switch's answer it writes the attendant's RTP port to a file, and the socket sends
telephone-events there (one RTP packet every 20 ms, as a phone does). Extensions
1000 (the operator), 1001 and 1002 are SIPp callees behind one trunk each that
carries only that number; a trunk from 127.0.0.1 lets callers in. Each callee
answers, talks half a second and hangs up, which ends the caller's call too.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from phpvoip.apps.attendant import Attendant
from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.rtp_phone import RtpPhone, poll
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

ATTENDANT_PORTS = (45900, 45939)  # no other test's range
DEADLINE = 40.0
EXTENSIONS = ("1000", "1001", "1002")
# Sunday 2026-11-29 12:00 in Berlin: closed in these hours.
SUNDAY_NOON = dt.datetime(2026, 11, 29, 11, 0, tzinfo=dt.UTC).timestamp()


def config(ports: dict[str, int], attendant: str) -> str:
    text = (
        "modules:\n"
        "  - type: trunk\n"  # lets the SIPp caller in; carries no extension
        "    name: callers\n"
        f"    address: {LOOPBACK}:{free_port()}\n"
        f"    allow: [{LOOPBACK}]\n"
        "    numbers: ['9999']\n"
    )
    for number, port in ports.items():
        text += (
            "  - type: trunk\n"
            f"    name: ext{number}\n"
            f"    address: {LOOPBACK}:{port}\n"
            "    allow: [192.0.2.1]\n"  # calls out only
            f"    numbers: ['{number}']\n"
        )
    return text + (
        "  - type: attendant\n"
        "    number: '800'\n"
        f"    ports: '{ATTENDANT_PORTS[0]}-{ATTENDANT_PORTS[1]}'\n"
        "    prompts: {invalid: beep, timeout: beep, transferring: beep, unavailable: beep}\n"
        + attendant
    )


async def call_attendant(reactor: Any, sipp: str, switch: Any, peers: Any, tmp_path: Path, attendant: str,
                         callee: str, digits: str, wall_clock: Any = None) -> tuple[Any, Attendant, float]:
    """Start the switch, the callee `callee`'s SIPp and a caller to 800 that presses
    `digits` once answered; wait for both SIPps to finish. Returns the service, the
    attendant and the seconds from the answer to the callee's end."""
    ports = {number: free_port() for number in EXTENSIONS}
    service = await switch(config(ports, attendant))
    [app] = [m for m in service.engine.modules if isinstance(m, Attendant)]
    if wall_clock is not None:
        app.wall_clock = wall_clock
    uas = peers.start(sipp_args(sipp, "attendant_uas.xml", ports[callee], None, "-s", callee, "-m", "1",
                                "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error"), deadline=DEADLINE)
    phone = RtpPhone(0xA77E)
    rtp_port = free_port()
    listening = reactor.listenUDP(rtp_port, phone, interface=LOOPBACK)
    try:
        caller = peers.start(
            sipp_args(sipp, "attendant_uac.xml", free_port(), service.port, "-s", "800", "-m", "1",
                      "-key", "rtp_port", str(rtp_port), "-timeout", f"{int(DEADLINE) - 5}s",
                      "-timeout_error"),
            deadline=DEADLINE,
        )
        port_file = tmp_path / "attendant_port.txt"
        text = await poll(reactor, lambda: port_file.exists() and port_file.read_text().strip(), 10.0)
        assert text, caller.output
        answered = reactor.seconds()
        port = int(text)
        assert ATTENDANT_PORTS[0] <= port <= ATTENDANT_PORTS[1]
        await task.deferLater(reactor, 0.3, lambda: None)  # the greeting has begun
        await phone.press(reactor, port, digits)
        assert await uas.wait() == 0, uas.output
        took = reactor.seconds() - answered
        assert await caller.wait() == 0, caller.output
    finally:
        await listening.stopListening()
    counts = await wait_idle(reactor, service.engine, 10.0)
    assert not any(counts.values()), counts
    assert app.stats()["in_menu"] == 0
    return service, app, took


@pytest_twisted.ensureDeferred
async def test_caller_presses_1_and_is_bridged_to_1001(reactor: Any, sipp: str, switch: Any, peers: Any,
                                                      tmp_path: Path) -> None:
    """DESIGN.md's minimal attendant: 800, digit 1, 1001's SIPp answers and talks to the caller."""
    service, app, took = await call_attendant(reactor, sipp, switch, peers, tmp_path,
                                              "    menu: {'1': '1001'}\n", "1001", "1")
    assert app.counters["bridged"] == 1 and app.counters["invalid"] == 0
    record = service.engine.records[-1]
    assert (record.callee, record.transfers, record.outbound_module) == ("800", ["1001"], "ext1001")
    assert (record.disposition, record.hangup_by) == ("ANSWERED", "callee")


@pytest_twisted.ensureDeferred
async def test_invalid_digit_then_silence_reach_the_operator(reactor: Any, sipp: str, switch: Any, peers: Any,
                                                             tmp_path: Path) -> None:
    """A wrong key replays the menu; silence past the timeout then sends the caller to the operator."""
    attendant = (
        "    menu: {greeting: beep, options: {'1': '1001'}}\n"
        "    operator: '1000'\n"
        "    timeout: 1.5\n"
        "    invalid_retries: 2\n"
        "    timeout_retries: 1\n"
    )
    service, app, took = await call_attendant(reactor, sipp, switch, peers, tmp_path, attendant, "1000", "7")
    assert (app.counters["invalid"], app.counters["no_input"], app.counters["operator"]) == (1, 1, 1)
    assert app.counters["bridged"] == 0
    assert service.engine.records[-1].transfers == ["1000"]


@pytest_twisted.ensureDeferred
async def test_dialling_1002_during_the_greeting_reaches_1002(reactor: Any, sipp: str, switch: Any,
                                                              peers: Any, tmp_path: Path) -> None:
    """The full greeting (greeting + menu, ~5 s) is cut by 1, 0, 0, 2 and 1002 is bridged at once."""
    attendant = (
        "    menu: {'1': '1001'}\n"
        "    direct_dial: '1XXX'\n"
    )
    service, app, took = await call_attendant(reactor, sipp, switch, peers, tmp_path, attendant, "1002",
                                              "1002")
    assert app.counters["direct"] == 1 and app.counters["bridged"] == 1
    assert service.engine.records[-1].transfers == ["1002"]
    # Digits (~1 s), "transferring" as a beep, ringing, 0.5 s of talk (~2 s in all): the
    # greeting alone lasts 5 s, so it was cut by the first digit.
    assert took < 4.0, took


@pytest_twisted.ensureDeferred
async def test_out_of_hours_menu_under_a_fixed_clock(reactor: Any, sipp: str, switch: Any, peers: Any,
                                                     tmp_path: Path) -> None:
    """On a Sunday the night menu plays: its 1 leads to 1002, where the day menu's 1 would ring 1001."""
    attendant = (
        "    menu: {'1': '1001'}\n"
        "    menus: {night: {greeting: closed, options: {'1': '1002'}}}\n"
        "    hours: {timezone: Europe/Berlin, open: {mon-fri: '09:00-17:00'}, closed_menu: night}\n"
    )
    service, app, took = await call_attendant(reactor, sipp, switch, peers, tmp_path, attendant, "1002", "1",
                                              wall_clock=lambda: SUNDAY_NOON)
    assert app.counters["closed"] == 1 and app.counters["menu:night"] == 1 and app.counters["bridged"] == 1
    assert service.engine.records[-1].transfers == ["1002"]
