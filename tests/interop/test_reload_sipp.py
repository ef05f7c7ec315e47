"""Full reload of the real service (twistd) by SIGHUP in the middle of a SIPp call:
the route added applies to the next call, the running call stays up and ends with
its own BYE, and the phone's binding made before the reload still routes calls."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import LOOPBACK, Switch, free_port, require_program, run_sipp, sipp_errors

pytestmark = pytest.mark.interop

SCENARIOS = Path(__file__).parent / "scenarios"
USERS = '"1001": {password: secret1}, "1002": {password: secret2}'
CONFIG = (
    "calls: {keepalive_interval: 0}\n"
    "modules:\n"
    "  - type: registrar\n"
    f"    users: {{{USERS}}}\n"
    "    algorithms: [MD5]\n"
    "routes:\n"
    '  - {in_to: "500", out_to: "1002"}\n'
)
RELOADED = (CONFIG.replace(USERS, USERS + ', "1003": {password: secret3}')
            + '  - {in_to: "600", out_to: "1002"}\n')
TALK_MS = 6000  # the first call lasts this long: the reload and the second call fit in it


def sipp_common(scenario: str, port: int, switch_port: int, calls: int = 1) -> list[str]:
    return ["-sf", str(SCENARIOS / scenario), "-i", LOOPBACK, "-p", str(port), "-m", str(calls),
            "-timeout", "30", "-trace_logs", f"{LOOPBACK}:{switch_port}"]  # fmt: skip


def wait_for(what: str, found, timeout: float = 10.0) -> None:
    """Poll `found()` (a file or log check) until it holds; bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def text_of(directory: Path, pattern: str) -> str:
    return "".join(p.read_text(errors="replace") for p in directory.glob(pattern))


def test_sighup_adds_a_route_mid_call(tmp_path):
    """1001 calls 500 (routed to the registered 1002) and talks for 6 s; meanwhile the
    file gains a route 600 -> 1002 and a user, and SIGHUP reloads it: a call to 600
    now reaches 1002 through the binding made before the reload, 1003 can register,
    and the first call ends normally (BYE answered 200)."""
    sipp = require_program("sipp")
    port, callee_port = free_port(), free_port()
    switch = Switch(tmp_path, Switch.config_for(port, CONFIG), port)
    callee = first = None
    try:
        switch.start()
        registered = run_sipp(
            ["-s", "1002", "-au", "1002", "-ap", "secret2", "-key", "expires", "600",
             *sipp_common("register.xml", callee_port, port)],
            tmp_path, timeout=30,
        )  # fmt: skip
        assert registered.returncode == 0, sipp_errors(tmp_path) + registered.stdout[-2000:]
        callee = subprocess.Popen(
            [sipp, "-nostdin", "-trace_err", *sipp_common("phone_answer.xml", callee_port, port, calls=2)],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        first = subprocess.Popen(
            [sipp, "-nostdin", "-trace_err", "-trace_msg", "-s", "500", "-key", "caller", "1001",
             "-au", "1001", "-ap", "secret1", "-d", str(TALK_MS),
             *sipp_common("phone_call.xml", free_port(), port)],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        # The call is up once the caller has sent its ACK for the 200.
        messages = "phone_call_*_messages.log"
        wait_for("the first call's ACK", lambda: "CSeq: 2 ACK" in text_of(tmp_path, messages))

        switch.config_path.write_text(Switch.config_for(port, RELOADED))
        switch.process.send_signal(signal.SIGHUP)
        wait_for("the reload's log line", lambda: "reloaded " in switch.log())
        summary = (f"reloaded {switch.config_path}: routes 1 -> 2; modules changed: registrar; "
                   "registrar users: +1003")
        assert summary in switch.log(), switch.log()

        second = run_sipp(
            ["-s", "600", "-key", "caller", "1001", "-au", "1001", "-ap", "secret1", "-d", "200",
             *sipp_common("phone_call.xml", free_port(), port)],
            tmp_path, timeout=30,
        )  # fmt: skip
        assert second.returncode == 0, sipp_errors(tmp_path) + switch.log()
        assert first.poll() is None, "the first call ended before the second one"
        added = run_sipp(
            ["-s", "1003", "-au", "1003", "-ap", "secret3", "-key", "expires", "600",
             *sipp_common("register.xml", free_port(), port)],
            tmp_path, timeout=30,
        )  # fmt: skip
        assert added.returncode == 0, sipp_errors(tmp_path)

        output, _ = first.communicate(timeout=TALK_MS / 1000 + 20)
        assert first.returncode == 0, output[-2000:] + sipp_errors(tmp_path)
        output, _ = callee.communicate(timeout=20)
        assert callee.returncode == 0, output[-2000:]
        answered = text_of(tmp_path, "phone_answer_*_logs.log")
        rang = answered.count(f"ANSWERED sip:1002@{LOOPBACK}:{callee_port}")
        assert rang == 2
        assert switch.alive()
    finally:
        for process in (first, callee):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(5)
        switch.stop()
