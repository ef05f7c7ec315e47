"""Fixtures for tests against real peers: an in-process switch and SIPp runs.

The switch runs in the test process on pytest-twisted's reactor (bound to 127.0.0.1
on free ports), so a test can look inside it afterwards (`engine.counts()`); the
peers run as child processes through the same reactor. Every process is killed at
its deadline and every switch stopped at teardown.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, error, task
from twisted.internet.protocol import ProcessProtocol

from phpvoip.config import load_text
from phpvoip.service import build_service
from tests.support import LOOPBACK, free_port, require_program

SCENARIOS = Path(__file__).parent / "scenarios"
# Short RFC timers so that transactions (64*T1) and Timer K (T4) end quickly and a
# test can check that nothing is left behind.
FAST_TIMERS = "  timers: {t1: 0.1, t2: 0.4, t4: 0.5}\n"


@pytest.fixture
def reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def sipp() -> str:
    return require_program("sipp")


class Collect(ProcessProtocol):
    """Keeps a child's output and fires `ended` with its exit code."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        del self.output[:-65536]

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if reason.check(error.ProcessTerminated) else 0
        self.ended.callback(code)


class Peer:
    """A child process run through the reactor, killed at its deadline."""

    def __init__(self, reactor: Any, args: list[str], cwd: Path, deadline: float) -> None:
        self.collect = Collect()
        self.args = args
        self.process = reactor.spawnProcess(self.collect, args[0], args, env=dict(os.environ), path=str(cwd))
        self._killer = reactor.callLater(deadline, self.kill)

    def kill(self) -> None:
        try:
            self.process.signalProcess(signal.SIGKILL)
        except error.ProcessExitedAlready:
            pass

    async def wait(self) -> int:
        code = await self.collect.ended
        if self._killer.active():
            self._killer.cancel()
        return code

    @property
    def output(self) -> str:
        return self.collect.output.decode(errors="replace")


def sipp_args(sipp: str, scenario: str, port: int, target: int | None = None, *extra: str) -> list[str]:
    """Arguments for SIPp with a built-in (`uac`/`uas`) or our scenario file."""
    args = [sipp, "-nostdin", "-i", LOOPBACK, "-p", str(port), "-trace_err"]
    if scenario in ("uac", "uas"):
        args += ["-sn", scenario]
    else:
        args += ["-sf", str(SCENARIOS / scenario)]
    args += list(extra)
    if target is not None:
        args.append(f"{LOOPBACK}:{target}")
    return args


@pytest.fixture
def peers(reactor: Any, tmp_path: Path):
    """Start peers with `peers.start(args, deadline)`; all are killed at teardown."""
    started: list[Peer] = []

    class Peers:
        def start(self, args: list[str], deadline: float = 60.0) -> Peer:
            peer = Peer(reactor, args, tmp_path, deadline)
            started.append(peer)
            return peer

    yield Peers()
    for peer in started:
        peer.kill()


@pytest_twisted.async_yield_fixture
async def switch(reactor: Any):
    """``await switch(extra_yaml)`` starts a switch; it is stopped at teardown."""
    services: list[Any] = []

    async def start(extra: str = "", timers: str = FAST_TIMERS) -> Any:
        port = free_port()
        text = (
            "sip:\n"
            f"  listen: [udp:{LOOPBACK}:{port}, tcp:{LOOPBACK}:{port}]\n"
            f"  domain: {LOOPBACK}\n" + timers + "storage: memory\n" + extra
        )
        service = build_service(load_text(text, "test.yaml"), reactor)
        service.port = port
        service.startService()
        services.append(service)
        return service

    yield start
    for service in services:
        await service.stopService()


async def wait_idle(reactor: Any, engine: Any, timeout: float = 15.0) -> dict[str, int]:
    """Wait (bounded) until the engine holds no call, leg, dialog or transaction."""
    deadline = reactor.seconds() + timeout
    counts = engine.counts()
    while any(counts.values()) and reactor.seconds() < deadline:
        await task.deferLater(reactor, 0.1, lambda: None)
        counts = engine.counts()
    return counts
