"""A real Kamailio as the outside line's upstream, run by the tests on loopback.

`Kamailio` starts Debian's ``kamailio`` in the foreground with our config
(``kamailio/upstream.cfg``), its own pid file, run and working directories, and its
log (stderr) in a file the test reads. It runs in a session of its own, so stopping
it (SIGTERM to that group, SIGKILL after a bound) also ends its worker children.
Waits poll through the reactor and never block it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

from tests.support import LOOPBACK, require_program

CONFIG = Path(__file__).parent / "kamailio" / "upstream.cfg"
DOMAIN = "carol.example"
PASSWORD = "secret"


class _Probe(DatagramProtocol):
    """Sends one OPTIONS and fires `answered` with the first datagram back."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered: defer.Deferred = defer.Deferred()

    def startProtocol(self) -> None:
        local = self.transport.getHost().port
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        text = (
            f"OPTIONS sip:{LOOPBACK}:{self.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{LOOPBACK}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{LOOPBACK}:{self.port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        self.transport.write(text.encode(), (LOOPBACK, self.port))

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        if not self.answered.called:
            self.answered.callback(data)

    def connectionRefused(self) -> None:
        pass


async def sip_ping(reactor: Any, port: int, timeout: float = 0.3) -> bool:
    """Whether something answers an OPTIONS on `port` within `timeout`."""
    probe = _Probe(port)
    listening = reactor.listenUDP(0, probe, interface=LOOPBACK)
    timer = reactor.callLater(timeout, lambda: probe.answered.called or probe.answered.callback(None))
    try:
        return (await probe.answered) is not None
    finally:
        if timer.active():
            timer.cancel()
        await listening.stopListening()


class Kamailio:
    """One Kamailio process; `start()` and `stop()` may be called again to restart
    it on the same port (it then forgets every registration: usrloc db_mode 0)."""

    def __init__(self, reactor: Any, workdir: Path, port: int, defines: tuple[str, ...] = ()) -> None:
        self.reactor = reactor
        self.workdir = workdir
        self.port = port
        self.defines = defines
        self.process: subprocess.Popen | None = None
        self.runs = 0
        self.log_path = workdir / "kamailio-0.log"

    def command(self) -> list[str]:
        binary = require_program("kamailio")
        run = self.workdir / "run"
        run.mkdir(exist_ok=True)
        args = [
            binary, "-DD", "-E", "-m", "256", "-M", "8",
            "-f", str(CONFIG),
            "-l", f"udp:{LOOPBACK}:{self.port}",
            "-P", str(run / "kamailio.pid"), "-Y", str(run), "-w", str(self.workdir),
            "-A", f'DOMAIN="{DOMAIN}"', "-A", f'PASSWORD="{PASSWORD}"',
        ]  # fmt: skip
        for define in self.defines:
            args += ["-A", define]
        return args

    async def start(self, timeout: float = 15.0) -> None:
        self.runs += 1
        self.log_path = self.workdir / f"kamailio-{self.runs}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = self.reactor.seconds() + timeout
        while self.reactor.seconds() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kamailio exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            if await sip_ping(self.reactor, self.port):
                return
            await task.deferLater(self.reactor, 0.1, lambda: None)
        await self.stop()
        raise RuntimeError(f"kamailio did not answer OPTIONS within {timeout}s:\n{self.log()[-3000:]}")

    async def stop(self, timeout: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        self._signal(process, signal.SIGTERM)
        deadline = self.reactor.seconds() + timeout
        while process.poll() is None and self.reactor.seconds() < deadline:
            await task.deferLater(self.reactor, 0.05, lambda: None)
        # The main process may be gone while a worker lingers: end the group too.
        self._signal(process, signal.SIGKILL)
        if process.poll() is None:
            process.wait(5)

    @staticmethod
    def _signal(process: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(process.pid, sig)  # its own session: the group id is its pid
        except ProcessLookupError:
            pass

    def log(self, run: int | None = None) -> str:
        path = self.log_path if run is None else self.workdir / f"kamailio-{run}.log"
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def lines(self, marker: str, run: int | None = None) -> list[str]:
        """Log lines of this run (or of run `run`) holding `marker`."""
        return [line for line in self.log(run).splitlines() if marker in line]

    def registrations(self, run: int | None = None) -> list[dict[str, str]]:
        """The REGISTERs Kamailio accepted: AOR, contact, expires, CSeq, Call-ID."""
        found = []
        for line in self.lines("REGISTERED", run):
            m = re.search(r"REGISTERED (\S+) contact (.*?) expires (\S+) cseq (\d+) callid (\S+)", line)
            if m:
                keys = ("aor", "contact", "expires", "cseq", "callid")
                found.append(dict(zip(keys, m.groups(), strict=True)))
        return found

    async def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        """Poll `predicate()` every 0.1 s until it holds; fail naming `what`."""
        deadline = self.reactor.seconds() + timeout
        while not predicate():
            if self.reactor.seconds() > deadline:
                raise AssertionError(f"timed out waiting for {what}; kamailio log:\n{self.log()[-3000:]}")
            await task.deferLater(self.reactor, 0.1, lambda: None)
