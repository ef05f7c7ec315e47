"""Fault: a peer that vanishes mid-call (issue 14, item 5).

SIPp caller → switch → SIPp callee; once the call is answered one of the two SIPp
processes is killed with SIGKILL, so it vanishes without a BYE. The switch's
keepalive (an in-dialog OPTIONS each second) to it goes unanswered; after Timer F
(64*T1, 3.2 s here) the switch ends the call: the survivor gets a BYE with
``Reason: SIP;cause=408``, the vanished side is sent one too (seen in the switch's
call ladder, since nobody is left to log it), the call record says the switch hung
up on a 408, and the engine ends up holding nothing.

(`test_trunk_flows.py` covers a callee that stays up but stops answering OPTIONS;
here the process is gone.)
"""

from __future__ import annotations

import signal
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task

from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.test_trunk_flows import KEEPALIVE_TIMERS, header, received, trunk_config, wait_bound
from tests.support import free_port

pytestmark = pytest.mark.interop

DEADLINE = 40.0


async def wait_answered(reactor: Any, service: Any, timeout: float = 10.0) -> Any:
    """The call's record once it is answered (bounded wait)."""
    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        records = [bridge.record for bridge in service.engine.calls.values()]  # calls up now
        if records and records[0].answer is not None:
            return records[0]
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"no call was answered within {timeout}s: {service.engine.counts()}")


def sent_by_switch(service: Any, record: Any, method: str, port: int) -> list[str]:
    """The `method` requests the switch sent to loopback `port` for the call (its ladder)."""
    return [
        entry.data.decode(errors="replace")
        for entry in service.ladders.messages(record)
        if entry.outgoing and entry.remote.port == port and entry.data.startswith(method.encode() + b" ")
    ]


@pytest.mark.parametrize("vanishing", ["callee", "caller"])
@pytest_twisted.ensureDeferred
async def test_keepalive_ends_both_legs_when_a_peer_vanishes(reactor, sipp, switch, peers, tmp_path,
                                                             vanishing):
    """SIGKILL one side of an answered call: within a keepalive period and Timer F
    both legs get a BYE with Reason 408 and the record says the switch hung up."""
    uas_port, uac_port = free_port(), free_port()
    service = await switch(trunk_config(uas_port, "keepalive_interval: 1"), KEEPALIVE_TIMERS)
    uac_log, uas_log = tmp_path / "uac.log", tmp_path / "uas.log"
    common = ("-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error", "-trace_msg")
    uas = peers.start(sipp_args(sipp, "fault_uas_answer_wait.xml", uas_port, None, *common,
                                "-message_file", str(uas_log)), deadline=DEADLINE)
    await wait_bound(reactor, uas, uas_port)
    uac = peers.start(sipp_args(sipp, "uac_callee_bye.xml", uac_port, service.port, "-s", "2005", *common,
                                "-message_file", str(uac_log)), deadline=DEADLINE)
    record = await wait_answered(reactor, service)

    gone, survivor, survivor_log = (uas, uac, uac_log) if vanishing == "callee" else (uac, uas, uas_log)
    gone_port = uas_port if vanishing == "callee" else uac_port
    gone.process.signalProcess(signal.SIGKILL)
    assert await gone.wait() != 0
    vanished_at = reactor.seconds()

    code = await survivor.wait()
    assert code == 0, f"{survivor.output}\n{survivor_log.read_text(errors='replace')[-4000:]}"
    ended_after = reactor.seconds() - vanished_at
    # One keepalive period, then Timer F (3.2 s), with some slack for the machine.
    assert ended_after < 1.0 + 3.2 + 3.0, ended_after

    (to_survivor,) = received(survivor_log, "BYE ")
    assert "SIP;cause=408" in (header(to_survivor, "Reason") or ""), to_survivor
    to_gone = sent_by_switch(service, record, "BYE", gone_port)
    assert to_gone, [entry.label for entry in service.ladders.messages(record)]
    assert all("SIP;cause=408" in (header(bye.replace("\r\n", "\n"), "Reason") or "") for bye in to_gone)
    # The switch probed the vanished peer before it gave up on it.
    assert sent_by_switch(service, record, "OPTIONS", gone_port)

    assert record.end is not None and record.hangup_by == "switch"
    assert record.status == 200 and record.disposition == "ANSWERED"
    assert "408" in record.cause, (record.cause, record.reason)
    # The BYE to the vanished side times out too (Timer F): then nothing is left.
    counts = await wait_idle(reactor, service.engine, 15.0)
    assert not any(counts.values()), counts
    assert list(service.engine.records) == [record]
