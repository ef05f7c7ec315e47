"""Two baresip phones (a softphone we did not write) call each other through the
switch's in-process relay: each is given only the relay's address, audio flows both
ways through it, baresip's RTP statistics at hang-up count packets both ways and the
call's record counts the same traffic on the relay."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, task

from tests.interop.conftest import wait_idle
from tests.interop.test_baresip_registrar import USERS, account, control, rtp_packets, write_config
from tests.support import LOOPBACK, require_program

pytestmark = pytest.mark.interop

RELAY_PORTS = (45360, 45379)  # no other test's range
TALK = 3.0  # seconds
RATE = 50  # packets a second at ptime 20


@pytest_twisted.ensureDeferred
async def test_two_baresip_phones_talk_through_the_relay(reactor: Any, switch: Any,
                                                         peers: Any, tmp_path: Path) -> None:
    """1001 calls 1002 (auto-answer) through ``media: relay``: both phones send and
    receive about 50 packets/s for the call, the INVITE/200 SDP each gets names the
    relay, and the record's counters show the packets both ways."""
    baresip = require_program("baresip")
    users = ", ".join(f'"{u}": {{password: {p}}}' for u, p in USERS.items())
    service = await switch(
        "calls: {keepalive_interval: 0}\n"
        "modules:\n"
        "  - type: registrar\n"
        f"    users: {{{users}}}\n"
        "    algorithms: [MD5]\n"
        f'media: {{mode: relay, ports: "{RELAY_PORTS[0]}-{RELAY_PORTS[1]}", rtp_timeout: 20}}\n'
    )
    phones: dict[str, Any] = {}
    controls: dict[str, Any] = {}
    for user in USERS:
        directory = tmp_path / user
        _, ctrl_port = write_config(directory)
        phones[user] = peers.start([baresip, "-f", str(directory)], deadline=60)
        controls[user] = await control(reactor, ctrl_port)
        controls[user].command("uanew", account(user, service.port))
    caller, callee = controls["1001"], controls["1002"]
    try:
        for user in USERS:
            event = await controls[user].event("REGISTER_OK", reactor)
            assert event["param"].startswith("200"), event
        caller.command("dial", f"sip:1002@{LOOPBACK}:{service.port}")
        await defer.gatherResults([caller.event("CALL_ESTABLISHED", reactor),
                                   callee.event("CALL_ESTABLISHED", reactor)])
        [bridge] = [b for b in service.engine.calls.values() if b.state.value == "answered"]
        relay_ports = {bridge.session.ports("a")[0], bridge.session.ports("b")[0]}
        established = reactor.seconds()
        await task.deferLater(reactor, TALK, lambda: None)
        caller.command("hangup")
        await defer.gatherResults([caller.event("CALL_CLOSED", reactor),
                                   callee.event("CALL_CLOSED", reactor)])
        talked = reactor.seconds() - established
    finally:
        for user in USERS:
            controls[user].command("quit")
    codes = [await phones[user].wait() for user in USERS]
    outputs = {user: phones[user].output for user in USERS}
    assert codes == [0, 0], outputs
    # Each phone hears the other only from a relay port (baresip logs where its
    # incoming RTP comes from once it is established).
    for user, output in outputs.items():
        sources = {int(p) for p in re.findall(r"receiving from 127\.0\.0\.1:(\d+)", output)}
        assert len(sources) == 1 and sources <= relay_ports, (user, sources, relay_ports, output[-3000:])
    expected = RATE * talked
    stats = {user: rtp_packets(output) for user, output in outputs.items()}
    for user, table in stats.items():
        assert len(table) == 1, (user, outputs[user][-3000:])
        sent, received = table[0]
        # baresip starts its audio a little after CALL_ESTABLISHED and stops at BYE.
        assert 0.7 * expected <= sent <= 1.2 * expected + 10, (user, sent, expected)
        assert 0.7 * expected <= received <= 1.2 * expected + 10, (user, received, expected)
    [record] = [r for r in service.engine.records if r.answer is not None]
    assert (record.caller, record.callee, record.hangup_by) == ("1001", "1002", "caller")
    caller_sent, caller_received = stats["1001"][0]
    callee_sent, callee_received = stats["1002"][0]
    a_to_b, b_to_a = record.media["a>b"]["packets"], record.media["b>a"]["packets"]
    # What the relay forwarded each way is what one phone sent and the other heard
    # (give or take packets in flight at the BYE).
    assert abs(a_to_b - caller_sent) <= 5 and abs(a_to_b - callee_received) <= 5, (a_to_b, stats)
    assert abs(b_to_a - callee_sent) <= 5 and abs(b_to_a - caller_received) <= 5, (b_to_a, stats)
    assert record.media["a>b"]["lost"] == 0 and record.media["b>a"]["lost"] == 0, record.media
    totals = service.engine.media.totals()
    assert (totals["port_pairs_in_use"], totals["sessions"]) == (0, 0), totals
    counts = await wait_idle(reactor, service.engine)
    assert not any(counts.values()), counts

