"""SIPp sends OPTIONS to an in-process SipTransport + FrontDoor and expects 200.

The switch runs in this process on the pytest-twisted reactor, bound to 127.0.0.1
on ports the OS picks; SIPp runs as a child process through the same reactor, so
both make progress. A later fixture will run the real `twistd -n phpvoip` instead.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol

from phpvoip.frontdoor import FrontDoor
from phpvoip.transport import SipTransport

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
SCENARIO = Path(__file__).parent / "scenarios" / "options.xml"
CALLS = 20
DEADLINE = 30.0  # seconds before SIPp is killed


@pytest.fixture
def sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        message = "sipp is not installed (make peers installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def reactor():
    from twisted.internet import reactor

    return reactor


@pytest_twisted.async_yield_fixture
async def switch(reactor):
    transport = SipTransport(reactor)
    transport.sink = FrontDoor(transport, HOST, [HOST])
    udp = transport.listen_udp(0, HOST)
    tcp = reactor.listenTCP(0, transport.tcp_factory(), interface=HOST)
    yield {"udp": udp.getHost().port, "tcp": tcp.getHost().port}
    transport.disconnect_all()
    await udp.stopListening()
    await tcp.stopListening()


class Collect(ProcessProtocol):
    """Keeps SIPp's output and fires `ended` with its exit code."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.ended: defer.Deferred = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data[-65536:]

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        code = reason.value.exitCode if reason.check(error.ProcessTerminated) else 0
        self.ended.callback(code)


async def run_sipp(reactor, sipp: str, port: int, transport: str, workdir: Path) -> tuple[int, str]:
    collect = Collect()
    args = [
        sipp, f"{HOST}:{port}",
        "-sf", str(SCENARIO),
        "-t", transport,
        "-i", HOST,
        "-m", str(CALLS),
        "-r", "50",
        "-nostdin",
        "-timeout", "20s", "-timeout_error",
        "-trace_err",
    ]
    process = reactor.spawnProcess(collect, sipp, args, env={"PATH": os.environ.get("PATH", "")},
                                   path=str(workdir))
    killer = reactor.callLater(DEADLINE, _kill, process)
    try:
        code = await collect.ended
    finally:
        if killer.active():
            killer.cancel()
    return code, collect.output.decode("utf-8", "replace")


def _kill(process) -> None:
    try:
        process.signalProcess(signal.SIGKILL)
    except error.ProcessExitedAlready:
        pass


@pytest.mark.parametrize("transport", ["u1", "t1"])
@pytest_twisted.ensureDeferred
async def test_sipp_options_get_200(reactor, sipp, switch, transport, tmp_path):
    """SIPp's 20 OPTIONS over UDP and over TCP all get 200 with Allow: SIPp exits 0."""
    port = switch["udp"] if transport == "u1" else switch["tcp"]
    code, output = await run_sipp(reactor, sipp, port, transport, tmp_path)
    errors = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_errors.log"))
    assert code == 0, f"sipp exited {code}\n{output[-3000:]}\n{errors[-3000:]}"
