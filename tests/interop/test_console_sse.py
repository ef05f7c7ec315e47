"""The console's event stream on the wire, without a browser: a switch with
``console:`` on, a SIPp call to a robot through it, and GET /events read with
twisted.web.client.Agent. The call's row appears in a `calls` batch within a second
of SIPp's INVITE, it carries both legs, and a batch's `ended` names it after its BYE."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, task
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, FileBodyProducer
from twisted.web.http_headers import Headers

from phpvoip.console.passwords import hash_password
from tests.interop.conftest import sipp_args
from tests.support import LOOPBACK, free_port

pytestmark = pytest.mark.interop

PASSWORD = "interop-secret"
HOLD_MS = 1500  # SIPp's built-in uac hangs up after this


class Stream(Protocol):
    """Reads an SSE body as it comes; `events` holds (kind, data) pairs."""

    def __init__(self) -> None:
        self.buffer = b""
        self.events: list[tuple[str, Any, float]] = []
        self.reactor: Any = None
        self.closed: defer.Deferred = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n")
                          if b": " in line and not line.startswith(b":"))
            if b"event" in fields:
                self.events.append((fields[b"event"].decode(), json.loads(fields[b"data"]),
                                    self.reactor.seconds()))

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)


async def wait_for(reactor: Any, check: Any, timeout: float) -> Any:
    """Poll `check` (bounded) until it returns something true; that, or None."""
    deadline = reactor.seconds() + timeout
    while reactor.seconds() < deadline:
        found = check()
        if found:
            return found
        await task.deferLater(reactor, 0.02, lambda: None)
    return None


@pytest_twisted.ensureDeferred
async def test_a_sipp_call_streams_its_row_then_its_end(reactor: Any, sipp: str, switch: Any,
                                                           peers: Any) -> None:
    """Log in over HTTP, open /events, place one SIPp call to the robot: `call` with
    its id and two legs within a second, its id in `ended` once SIPp has hung up."""
    http = free_port()
    service = await switch(
        "modules:\n"
        "  - {type: trunk, name: sipp, address: '" + f"{LOOPBACK}:{free_port()}" + "', allow: ["
        + LOOPBACK + "], numbers: ['2*']}\n"
        "  - {type: robot, number: '9000', answer_after: 0.2, hangup_after: 30}\n"
        "console:\n"
        f"  listen: 'tcp:{http}:interface={LOOPBACK}'\n"
        f"  users: {{admin: {{password_hash: '{hash_password(PASSWORD, 1_000)}'}}}}\n"
    )
    base = f"http://{LOOPBACK}:{http}"
    agent = Agent(reactor)
    form = FileBodyProducer(io.BytesIO(f"username=admin&password={PASSWORD}".encode()))
    login = await agent.request(b"POST", f"{base}/login".encode(),
                                Headers({b"content-type": [b"application/x-www-form-urlencoded"]}), form)
    assert login.code == 303
    cookie = re.match(r"phpvoip_session=([^;]+)", login.headers.getRawHeaders(b"set-cookie")[0].decode())
    headers = Headers({b"cookie": [f"phpvoip_session={cookie.group(1)}".encode()]})
    events = await agent.request(b"GET", f"{base}/events".encode(), headers)
    assert events.code == 200
    assert events.headers.getRawHeaders(b"content-type")[0].startswith(b"text/event-stream")
    stream = Stream()
    stream.reactor = reactor
    events.deliverBody(stream)
    try:
        started = reactor.seconds()
        peer = peers.start(sipp_args(sipp, "uac", free_port(), service.port, "-s", "9000", "-m", "1",
                                     "-d", str(HOLD_MS), "-timeout", "20s"), deadline=30)

        def call_event() -> Any:
            return next(((row, t) for k, d, t in stream.events if k == "calls" for row in d["upsert"]), None)

        seen = await wait_for(reactor, call_event, 5.0)
        assert seen is not None, f"no call event; SIPp said:\n{peer.output}"
        row, when = seen
        assert when - started < 1.0, f"the call showed after {when - started:.2f}s"
        assert row["id"].startswith("call-") and [leg["role"] for leg in row["legs"]] == ["caller", "callee"]
        assert await peer.wait() == 0, peer.output
        ended = await wait_for(
            reactor, lambda: [d for k, d, _ in stream.events if k == "calls" and row["id"] in d["ended"]],
            5.0)
        assert ended, stream.events
        # The counters follow within a second (stats are sent at most once a second).
        end = next(i for i, (k, d, _) in enumerate(stream.events) if k == "calls" and d["ended"])
        stats = await wait_for(reactor, lambda: [d for k, d, _ in stream.events[end:]
                                                 if k == "stats" and d["calls_active"] == 0], 3.0)
        assert stats and sum(stats[-1]["calls_per_minute"]) == 1, stream.events
    finally:
        stream.transport.loseConnection()  # the client's end; the switch's stop closes its own
