"""A flood of 5,000 requests/s from 127.0.0.3 while SIPp calls from 127.0.0.1 go on at
50/s through a trunk: none of the calls fails, the flooder is banned (and dropped
before parsing), and its ban ends. bench/flood.sh is the longer run with figures."""

from __future__ import annotations

import json
import select
import socket
import sys
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import task, threads
from twisted.logger import formatEvent, globalLogPublisher

from tests.interop.conftest import sipp_args, wait_idle
from tests.interop.test_trunk_flows import wait_bound
from tests.support import free_port

pytestmark = pytest.mark.interop

FLOOD = Path(__file__).resolve().parents[2] / "bench" / "flood.py"
FLOODER = "127.0.0.3"
BAN = 3  # seconds: short, so that the test sees it end
CALLS = 300  # 6 s at 50/s


def options_answered(source: str, port: int, timeout: float = 1.0) -> bool:
    """Whether one OPTIONS from `source` to the switch gets an answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        local = sock.getsockname()[1]
        sock.sendto((f"OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\n"
                     f"Via: SIP/2.0/UDP {source}:{local};branch=z9hG4bKprobe{local}\r\n"
                     f"Max-Forwards: 70\r\nFrom: <sip:probe@{source}>;tag=p\r\nTo: <sip:probe@127.0.0.1>\r\n"
                     f"Call-ID: probe-{local}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(),
                    ("127.0.0.1", port))
        return bool(select.select([sock], [], [], timeout)[0])


def config(uas_port: int) -> str:
    return (
        f"limits: {{per_source: {{requests: 30, window: 2}}, ban: {BAN}}}\n"
        "ladders: {enabled: false}\n"
        "calls: {keepalive_interval: 0}\n"
        "modules:\n"
        f"  - {{type: trunk, name: backend, address: '127.0.0.1:{uas_port}', allow: [127.0.0.1],"
        " numbers: ['*']}\n"
    )


@pytest_twisted.ensureDeferred
async def test_flood_from_one_source_does_not_fail_calls(reactor, sipp, switch, peers):
    """5,000 OPTIONS/s from 127.0.0.3 for 5 s during 300 SIPp calls at 50/s from the
    trunk peer 127.0.0.1: every call succeeds, the flooder is banned after its first
    30 requests and dropped unparsed, and answered again once the ban has ended."""
    lines: list[str] = []

    def observe(event: dict) -> None:
        if event.get("log_namespace") == "phpvoip.limits":
            lines.append(formatEvent(event))

    uas_port = free_port()
    service = await switch(config(uas_port))
    limits = service.limits
    globalLogPublisher.addObserver(observe)
    try:
        uas = peers.start(sipp_args(sipp, "uas", uas_port, None, "-m", str(CALLS)), deadline=60)
        await wait_bound(reactor, uas, uas_port)
        uac = peers.start(
            sipp_args(sipp, "uac", free_port(), service.port, "-s", "2005", "-m", str(CALLS), "-r", "50"),
            deadline=60,
        )
        await task.deferLater(reactor, 0.5, lambda: None)
        flooder = peers.start([sys.executable, str(FLOOD), "send", "--source", FLOODER, "--rate", "5000",
                               "--duration", "5", "--target", f"127.0.0.1:{service.port}"], deadline=30)
        assert await flooder.wait() == 0, flooder.output
        offered = json.loads(flooder.output.strip().splitlines()[-1])
        banned_during = FLOODER in limits.banned
        assert await uac.wait() == 0, uac.output
        assert await uas.wait() == 0, uas.output
        records = list(service.engine.records)
        assert len(records) == CALLS and all(r.status == 200 for r in records)
        counts = await wait_idle(reactor, service.engine)
        assert not any(counts.values()), counts

        assert offered["rate"] >= 4000, offered
        assert banned_during
        # At most one window's worth per ban got through (answered): the rest was
        # dropped before parsing.
        bans = limits.bans_total
        assert offered["answers"] <= 31 * bans
        assert limits.dropped["banned"] >= offered["sent"] - 31 * bans
        assert bans <= 5 / BAN + 2  # banned again each time its ban ended mid-flood
        assert f"phpvoip: ban {FLOODER} for {BAN}s: 31 requests in 2s" in lines

        await task.deferLater(reactor, BAN + 1.0, lambda: None)
        assert FLOODER not in limits.banned
        assert await threads.deferToThread(options_answered, FLOODER, service.port)
        assert f"phpvoip: ban of {FLOODER} ended" in lines
    finally:
        globalLogPublisher.removeObserver(observe)
