"""Shared helpers for tests that run real processes on loopback.

Everything here is bounded: every wait has a deadline and every process started is
stopped (SIGTERM, then SIGKILL) by the fixture or context manager that started it.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
LOOPBACK = "127.0.0.1"


def require_program(name: str) -> str:
    """The path of a peer program; a failure in CI when missing, else a skip."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (make test installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


# Ports handed to tests come from below the kernel's ephemeral range (32768-60999
# here), so that no socket bound to port 0 in the meantime (a peer's outgoing socket,
# another free_port probe) can take one between the choice and its use: that race made
# SIPp fail with "Address already in use" now and then under load.
_TEST_PORTS = range(20000, 32768)
_given: set[int] = set()


def free_port() -> int:
    """A port free for both UDP and TCP on loopback right now, not handed out before
    in this process, and outside the ephemeral range."""
    for _ in range(200):
        port = random.choice(_TEST_PORTS)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                tcp.bind((LOOPBACK, port))
                udp.bind((LOOPBACK, port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free port found")


def wait_udp_bound(process: subprocess.Popen, port: int, timeout: float = 10.0) -> None:
    """Wait (bounded) until `process` has bound UDP `port` on loopback, so nothing
    reaches it before it listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited with {process.returncode} before it listened")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    return
                raise
        time.sleep(0.02)
    raise AssertionError(f"nothing bound UDP port {port} within {timeout}s")


def options_request(port: int, local_port: int, call_id: str | None = None, transport: str = "UDP") -> bytes:
    call_id = call_id or uuid.uuid4().hex
    return (
        f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {LOOPBACK}:{local_port};branch=z9hG4bK{uuid.uuid4().hex[:16]};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:probe@{LOOPBACK}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:{LOOPBACK}:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def udp_exchange(port: int, data: bytes, timeout: float = 2.0, expect_reply: bool = True) -> bytes | None:
    """Send one datagram to the switch and return the first reply (None on timeout)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(timeout)
        sock.sendto(data, (LOOPBACK, port))
        if not expect_reply:
            return None
        try:
            return sock.recvfrom(65535)[0]
        except TimeoutError:
            return None


def options_ping(port: int, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(timeout)
        sock.sendto(options_request(port, sock.getsockname()[1]), (LOOPBACK, port))
        try:
            return sock.recvfrom(65535)[0]
        except (TimeoutError, ConnectionRefusedError):
            return None


class Switch:
    """A real `twistd -n phpvoip` process with a config written for the test."""

    def __init__(self, workdir: Path, config_text: str, port: int) -> None:
        self.workdir = workdir
        self.port = port
        self.config_path = workdir / "phpvoip.yaml"
        self.config_path.write_text(config_text)
        self.log_path = workdir / "switch.log"
        self.process: subprocess.Popen | None = None

    @classmethod
    def config_for(cls, port: int, extra: str = "", storage: str = "memory") -> str:
        return (
            "sip:\n"
            f"  listen: [udp:{LOOPBACK}:{port}, tcp:{LOOPBACK}:{port}]\n"
            f"  domain: {LOOPBACK}\n"
            f"storage: {storage}\n" + extra
        )

    def start(self, timeout: float = 20.0) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(VENV_BIN / "twistd"), "-n", "--pidfile=", "phpvoip", "--config", str(self.config_path)],
            cwd=self.workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"switch exited with {self.process.returncode}:\n{self.log()}")
            if options_ping(self.port, 0.3) is not None:
                return
        self.stop()
        raise RuntimeError(f"switch did not answer OPTIONS within {timeout}s:\n{self.log()}")

    def alive(self) -> bool:
        running = self.process is not None and self.process.poll() is None
        return running and options_ping(self.port) is not None

    def stop(self, timeout: float = 10.0) -> int | None:
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        self._log.close()
        self.process = None
        return process.returncode

    def log(self) -> str:
        """The last 5,000 characters of the log (for assertion messages)."""
        return self.full_log()[-5000:]

    def full_log(self) -> str:
        """The whole log, every start of the switch included."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def run_sipp(args: list[str], cwd: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run SIPp to completion (bounded), with its error and stat traces in `cwd`."""
    sipp = require_program("sipp")
    command = [sipp, "-nostdin", "-trace_err", "-trace_stat", *args]
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, timeout=timeout, text=True)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"sipp did not finish within {timeout}s: {' '.join(command)}") from e


def sipp_errors(cwd: Path) -> str:
    """What SIPp wrote to its *_errors.log files, for assertion messages."""
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in cwd.glob("*_errors.log"))
