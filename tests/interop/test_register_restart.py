"""A registration survives a restart of the real service (twistd, SQLite store): a
phone registers, the switch stops and starts again on the same database, and a
call to the phone still reaches it, with the binding's expiry unchanged."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import LOOPBACK, Switch, free_port, require_program, run_sipp, sipp_errors

pytestmark = pytest.mark.interop

SCENARIOS = Path(__file__).parent / "scenarios"
CONFIG = (
    "calls: {keepalive_interval: 0}\n"
    "modules:\n"
    "  - type: registrar\n"
    '    users: {"1001": {password: secret1}, "1002": {password: secret2}}\n'
    "    algorithms: [MD5]\n"
)


def sipp_common(scenario: str, port: int, switch_port: int) -> list[str]:
    return ["-sf", str(SCENARIOS / scenario), "-i", LOOPBACK, "-p", str(port), "-m", "1", "-timeout", "20",
            "-trace_logs", f"{LOOPBACK}:{switch_port}"]  # fmt: skip


def wait_for_log(switch: Switch, text: str, timeout: float) -> bool:
    """Whether `text` shows in the switch's log within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while text not in switch.full_log():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def bindings_in(database: Path) -> list[tuple]:
    with sqlite3.connect(database) as db:
        return db.execute("SELECT aor, contact, expires_at FROM bindings ORDER BY aor").fetchall()


def test_binding_routes_a_call_after_a_restart(tmp_path):
    """Register 1002, restart the switch, and 1001's call still rings 1002 at the
    address it registered from; the stored expiry is the same after the restart."""
    sipp = require_program("sipp")
    port = free_port()
    callee_port, caller_port = free_port(), free_port()
    switch = Switch(tmp_path, Switch.config_for(port, CONFIG, storage="sqlite:var/registrar.db"), port)
    database = tmp_path / "var" / "registrar.db"
    try:
        switch.start()
        registered = run_sipp(
            ["-s", "1002", "-au", "1002", "-ap", "secret2", "-key", "expires", "600",
             *sipp_common("register.xml", callee_port, port)],
            tmp_path, timeout=30,
        )  # fmt: skip
        assert registered.returncode == 0, sipp_errors(tmp_path) + registered.stdout[-2000:]
        switch.stop()  # SIGTERM: the service stops and the store is flushed
        assert "Server Shut Down" in switch.log()
        before = bindings_in(database)
        contact = f"sip:1002@{LOOPBACK}:{callee_port}"
        assert [(aor, uri) for aor, uri, _ in before] == [("1002", contact)]

        switch.start()
        # The store loads on its thread once the switch answers: its line may come a little later.
        assert wait_for_log(switch, "1 bindings restored", 10.0), switch.log()
        assert bindings_in(database) == before
        # The phone is back on its port (not registering again) and answers.
        answer = subprocess.Popen(
            [sipp, "-nostdin", "-trace_err", *sipp_common("phone_answer.xml", callee_port, port)],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            caller = run_sipp(
                ["-s", "1001", "-au", "1001", "-ap", "secret1", "-key", "expires", "600",
                 *sipp_common("register.xml", caller_port, port)],
                tmp_path, timeout=30,
            )  # fmt: skip
            assert caller.returncode == 0, sipp_errors(tmp_path)
            call = run_sipp(
                ["-s", "1002", "-key", "caller", "1001", "-au", "1001", "-ap", "secret1", "-d", "200",
                 *sipp_common("phone_call.xml", caller_port, port)],
                tmp_path, timeout=30,
            )  # fmt: skip
            assert call.returncode == 0, sipp_errors(tmp_path) + switch.log()
            output, _ = answer.communicate(timeout=20)
        finally:
            if answer.poll() is None:
                answer.kill()
                answer.wait(5)
        assert answer.returncode == 0, output[-2000:]
        logs = "".join(p.read_text() for p in tmp_path.glob("phone_answer_*_logs.log"))
        assert f"ANSWERED sip:1002@{LOOPBACK}:{callee_port}" in logs
    finally:
        switch.stop()
