"""Call events on the wire: a refused SIPp call ends with its status in CallEnded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from zope.interface import implementer

from phpvoip.events import CallAttempted, CallEnded
from phpvoip.interfaces import ICallObserver
from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.test_trunk_flows import DEADLINE, TIMER_D_IDLE, trunk_config, wait_bound
from tests.support import free_port

pytestmark = pytest.mark.interop


@implementer(ICallObserver)
class Ended:
    """Keeps the attempts and endings it hears."""

    def __init__(self) -> None:
        self.attempts: list[CallAttempted] = []
        self.endings: list[CallEnded] = []

    def call_event(self, event: Any) -> None:
        if isinstance(event, CallAttempted):
            self.attempts.append(event)
        elif isinstance(event, CallEnded):
            self.endings.append(event)


@pytest_twisted.ensureDeferred
async def test_refused_calls_end_with_their_status(reactor: Any, sipp: str, switch: Any, peers: Any,
                                                   tmp_path: Path) -> None:
    """A SIPp call no module takes ends 404, one the callee refuses ends 486 (BUSY)."""
    uas_port = free_port()
    config = trunk_config(uas_port).replace("numbers: ['*']", "numbers: ['2*']")
    service = await switch(config)
    seen = Ended()
    service.engine.add_observer(seen)
    common = ("-m", "1", "-timeout", f"{int(DEADLINE) - 5}s", "-timeout_error")
    # Nobody carries 999: refused by the switch itself.
    nowhere = peers.start(
        sipp_args(sipp, "uac_rejected.xml", free_port(), service.port, "-s", "999", *common),
        deadline=DEADLINE,
    )
    assert await nowhere.wait() == 0, nowhere.output
    # 2005 goes out to a SIPp callee that answers 486.
    uas = peers.start(sipp_args(sipp, "uas_busy.xml", uas_port, None, *common), deadline=DEADLINE)
    await wait_bound(reactor, uas, uas_port)
    busy = peers.start(sipp_args(sipp, "uac_busy.xml", free_port(), service.port, "-s", "2005", *common),
                       deadline=DEADLINE)
    assert await busy.wait() == 0, busy.output
    assert await uas.wait() == 0, uas.output
    assert [(e.call.callee, e.source.host) for e in seen.attempts] == [
        ("999", "127.0.0.1"), ("2005", "127.0.0.1")]
    refused, rejected = seen.endings
    assert (refused.status, refused.disposition, refused.cause, refused.hung_up_by) == (
        404, "FAILED", "SIP;cause=404", "switch")
    assert (rejected.status, rejected.disposition, rejected.q850, rejected.hung_up_by) == (
        486, "BUSY", 17, "callee")
    assert rejected.call.outbound_module == "backend" and refused.call.outbound_module == ""
    counts = await wait_idle(reactor, service.engine, TIMER_D_IDLE)
    assert not any(counts.values()), counts
