"""Calls through the switch between two SIPp instances: UAC → trunk in → trunk out → UAS."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.test_trunk_flows import wait_bound
from tests.support import free_port

pytestmark = pytest.mark.interop


def trunk_config(uas_port: int, extra_calls: str = "") -> str:
    return (
        "calls: {keepalive_interval: 0" + extra_calls + "}\n"
        "modules:\n"
        "  - type: trunk\n"
        "    name: backend\n"
        f"    address: 127.0.0.1:{uas_port}\n"
        "    allow: [127.0.0.1]\n"
        "    numbers: ['*']\n"
    )


@pytest_twisted.ensureDeferred
async def test_200_calls_in_a_row(reactor, sipp, switch, peers):
    """200 calls from a SIPp UAC reach a SIPp UAS through the switch, none fail."""
    uas_port = free_port()
    service = await switch(trunk_config(uas_port))
    uas = peers.start(sipp_args(sipp, "uas", uas_port, None, "-m", "200"), deadline=90)
    await wait_bound(reactor, uas, uas_port)
    uac = peers.start(
        sipp_args(sipp, "uac", free_port(), service.port, "-s", "2005", "-m", "200", "-r", "50", "-l", "20"),
        deadline=90,
    )
    assert await uac.wait() == 0, uac.output
    assert await uas.wait() == 0, uas.output
    counts = await wait_idle(reactor, service.engine)
    assert not any(counts.values()), counts
    records = list(service.engine.records)
    assert len(records) == 200
    assert all(r.status == 200 and r.answer is not None for r in records)
    assert all(r.hangup_by == "caller" and r.end is not None for r in records)
    assert len({r.call_id for r in records}) == 200
