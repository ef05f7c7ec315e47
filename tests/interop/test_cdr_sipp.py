"""Call detail records from the real service: `twistd -n phpvoip` on a SQLite store,
SIPp callers and callees through a trunk, and the rows read back from the file.

One switch process runs every flow in turn: answered (the caller hangs up after a
2 s pause), busy (486), cancelled while ringing, refused by the switch (404: no
module carries the number) and refused by the callee (403). Their rows reach the
file while the switch runs (the flush interval). Then a call is answered and the
switch gets SIGTERM in mid-call: the shutdown hangs it up (BYE both ways) and its
row is in the file once the process has exited. The export command reads them all.
"""

from __future__ import annotations

import csv
import io
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import LOOPBACK, Switch, free_port, require_program, sipp_errors, wait_udp_bound

pytestmark = pytest.mark.interop

SCENARIOS = Path(__file__).parent / "scenarios"
DATABASE = "var/phpvoip.db"
TALK = 2.0  # the answered call's pause (SIPp -d), about its billsec
HELD = 1.0  # how long the last call talks before SIGTERM
# twistd re-raises SIGTERM on itself after a clean shutdown.
CLEAN_EXIT = (0, -signal.SIGTERM)


def config(uas_port: int) -> str:
    return (
        "calls: {keepalive_interval: 0}\n"
        "cdr: {batch: 50, flush_interval: 0.5}\n"
        "modules:\n"
        "  - type: trunk\n"
        "    name: backend\n"
        f"    address: 127.0.0.1:{uas_port}\n"
        "    allow: [127.0.0.1]\n"
        "    numbers: ['2*']\n"
    )


def sipp(scenario: str, port: int, *extra: str) -> list[str]:
    return [require_program("sipp"), "-nostdin", "-trace_err", "-sf", str(SCENARIOS / scenario),
            "-i", LOOPBACK, "-p", str(port), "-m", "1", "-timeout", "30", "-timeout_error", *extra]



class Peers:
    """SIPp processes of one test, each waited for (bounded) or killed at the end."""

    def __init__(self, cwd: Path, switch_port: int) -> None:
        self.cwd = cwd
        self.port = switch_port
        self.started: list[subprocess.Popen] = []

    def start(self, args: list[str]) -> subprocess.Popen:
        process = subprocess.Popen(args, cwd=self.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
        self.started.append(process)
        return process

    def finish(self, process: subprocess.Popen, timeout: float = 30.0) -> None:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate(timeout=5)
        assert process.returncode == 0, f"{process.args[5]}: {output[-2000:]}\n{sipp_errors(self.cwd)}"

    def call(self, uac: str, callee: str, uas: str | None, uas_port: int, *extra: str) -> None:
        """One flow: the callee's SIPp (listening first), then the caller's, both to the end."""
        answering = None
        if uas is not None:
            answering = self.start(sipp(uas, uas_port))
            wait_udp_bound(answering, uas_port)
        self.finish(self.start(sipp(uac, free_port(), "-s", callee, *extra, f"{LOOPBACK}:{self.port}")))
        if answering is not None:
            self.finish(answering)

    def kill_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(5)


def rows_in(database: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(database) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM cdr ORDER BY start_time")]


def wait_rows(database: Path, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = rows_in(database) if database.exists() else []
        if len(rows) >= count:
            return rows
        time.sleep(0.05)
    raise AssertionError(f"{len(rows)} call records in {database} after {timeout}s, expected {count}")


def wait_for_text(path_glob: tuple[Path, str], text: str, timeout: float = 10.0) -> None:
    folder, pattern = path_glob
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(text in p.read_text(errors="replace") for p in folder.glob(pattern)):
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} not seen in {pattern} within {timeout}s")


def test_call_records_of_sipp_calls_survive_sigterm(tmp_path: Path) -> None:
    """Answered, busy, cancelled and refused calls get rows with their disposition,
    status and durations; a call in progress at SIGTERM is hung up by the switch and
    its row is in the file after the process exits."""
    port, uas_port = free_port(), free_port()
    switch = Switch(tmp_path, Switch.config_for(port, config(uas_port), storage=f"sqlite:{DATABASE}"), port)
    database = tmp_path / DATABASE
    peers = Peers(tmp_path, port)
    try:
        switch.start()
        peers.call("cdr_uac_talk.xml", "2001", "uas_answer.xml", uas_port, "-d", str(int(TALK * 1000)))
        peers.call("uac_busy.xml", "2002", "uas_busy.xml", uas_port)
        peers.call("uac_cancel.xml", "2003", "uas_cancelled.xml", uas_port)
        peers.call("cdr_uac_refused.xml", "999", None, uas_port)
        peers.call("cdr_uac_refused.xml", "2004", "cdr_uas_forbidden.xml", uas_port)
        before = wait_rows(database, 5)  # written while the switch runs

        # The last call: answered, then the switch is stopped under it.
        callee = peers.start(sipp("uas_answer.xml", uas_port, "-trace_msg"))
        wait_udp_bound(callee, uas_port)
        caller = peers.start(sipp("uac_callee_bye.xml", free_port(), "-s", "2005", f"{LOOPBACK}:{port}"))
        wait_for_text((tmp_path, "uas_answer_*_messages.log"), "ACK sip:")
        time.sleep(HELD)  # the talk time the row must show
        code = switch.stop()
        assert code in CLEAN_EXIT, switch.log()
        peers.finish(caller)  # both got the switch's BYE and answered it
        peers.finish(callee)
    finally:
        switch.stop()
        peers.kill_all()
    log = switch.log_path.read_text(errors="replace")
    assert "Server Shut Down" in log and "call records: 6 written" in log, log[-3000:]

    rows = rows_in(database)
    assert [r["callee"] for r in rows] == ["2001", "2002", "2003", "999", "2004", "2005"]
    assert [r["id"] for r in before] == [r["id"] for r in rows[:5]]
    answered, busy, cancelled, nowhere, forbidden, held = rows
    how = ("disposition", "status", "cause", "q850", "hangup_by")
    assert [answered[k] for k in how] == ["ANSWERED", 200, "Q.850;cause=16", 16, "caller"]
    assert [busy[k] for k in how] == ["BUSY", 486, "SIP;cause=486", 17, "callee"]
    assert [cancelled[k] for k in how] == ["CANCELLED", 487, "SIP;cause=487", 127, "caller"]
    assert [nowhere[k] for k in how] == ["FAILED", 404, "SIP;cause=404", 1, "switch"]
    assert [forbidden[k] for k in how] == ["FAILED", 403, "SIP;cause=403", 21, "callee"]
    assert [held[k] for k in how] == ["ANSWERED", 200, "SIP;cause=503", 41, "switch"]
    assert held["reason"] == "Switch shutting down"

    # Durations: billsec is the talk time, duration from the INVITE to the end.
    assert TALK - 0.1 <= answered["billsec"] <= TALK + 1.0, answered
    assert HELD - 0.1 <= held["billsec"] <= HELD + 2.0, held
    for row in rows:
        assert row["start_time"] <= row["end_time"] and abs(row["duration"] - (
            row["end_time"] - row["start_time"])) < 0.002, row
        if row["disposition"] == "ANSWERED":
            assert row["start_time"] <= row["answer_time"] <= row["end_time"]
            assert abs(row["billsec"] - (row["end_time"] - row["answer_time"])) < 0.002
        else:
            assert row["answer_time"] is None and row["billsec"] == 0.0
    assert abs(time.time() - held["end_time"]) < 60  # epoch seconds, not a monotonic clock

    # Who and where: SIPp callers on loopback, in and out through the trunk (the
    # number the switch refused was routed but no module carried it out).
    assert [r["caller"] for r in rows] == ["1001", "sipp", "sipp", "1001", "1001", "sipp"]
    assert all(r["source"].startswith(f"udp:{LOOPBACK}:") for r in rows)
    assert all(r["inbound_module"] == "backend" for r in rows)
    assert [r["outbound_module"] for r in rows] == ["backend"] * 3 + [None, "backend", "backend"]
    assert (nowhere["routed_to"], answered["routed_to"]) == ("999", "2001")
    assert len({r["call_id"] for r in rows}) == 6
    assert len({r["id"].rsplit("-call-", 1)[0] for r in rows}) == 1  # one boot id
    assert all(r[c] is None for r in rows for c in r if c.startswith("rtp_"))  # no media relayed yet

    exported = subprocess.run([sys.executable, "-m", "phpvoip.store", str(database), "cdr", "--csv"],
                              capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    table = list(csv.DictReader(io.StringIO(exported.stdout, newline="")))
    assert [(r["callee"], r["disposition"]) for r in table] == [
        (r["callee"], r["disposition"]) for r in rows]
