"""Issue 3 over real UDP with SIPp: an INVITE refused with 403 and never ACKed sees
the 403 retransmitted at T1, 2*T1, 4*T1 ... capped at T2 until timer H; over TCP
it is sent once.

SIPp runs `scenarios/invite_no_ack.xml` against the real `twistd` switch (T1 0.2 s,
T2 0.8 s). SIPp itself counts the copies of the 403 (its `-trace_counts` column
`2_403_Retrans`) and logs each arrival with a timestamp (`-trace_msg`), from which
the gaps are measured.
"""

from __future__ import annotations

import csv
import re
from datetime import datetime
from pathlib import Path

import pytest

from tests.interop._wire import T1, T2, gaps, running_switch, timer_g_schedule
from tests.support import LOOPBACK, free_port, run_sipp, sipp_errors

pytestmark = pytest.mark.interop

SCENARIO = Path(__file__).parent / "scenarios" / "invite_no_ack.xml"
TOLERANCE = 0.09  # seconds either way on a gap, under T1 / 2
_STAMP = re.compile(r"^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\s*$")


def received(log: str) -> list[tuple[float, str]]:
    """(time, start line) of every message SIPp logged as received."""
    arrivals: list[tuple[float, str]] = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = _STAMP.match(line)
        if m is None or i + 1 >= len(lines) or "message received" not in lines[i + 1]:
            continue
        start = next((text.strip() for text in lines[i + 2 : i + 5] if text.strip()), "")
        at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        arrivals.append((at, start))
    return arrivals


def counts(workdir: Path) -> dict[str, int]:
    """The last row of SIPp's -trace_counts file, column -> value."""
    (path,) = workdir.glob("*_counts.csv")
    rows = list(csv.reader(path.read_text().splitlines(), delimiter=";"))
    header, last = rows[0], rows[-1]
    return {name: int(value) for name, value in zip(header, last, strict=False) if value.isdigit()}


def run_scenario(workdir: Path, port: int, transport: str, pause_ms: int):
    return run_sipp(
        [
            f"{LOOPBACK}:{port}",
            "-sf", str(SCENARIO),
            "-t", transport,
            "-i", LOOPBACK,
            "-p", str(free_port()),
            "-s", "1002",
            "-m", "1",
            "-d", str(pause_ms),
            "-trace_counts", "-trace_msg",
        ],
        workdir,
        timeout=pause_ms / 1000 + 30,
    )


def test_sipp_sees_403_retransmitted_until_timer_h(tmp_path: Path) -> None:
    """Over UDP SIPp receives the 403 once plus 17 retransmissions (T1 0.2 s, T2
    0.8 s, H 12.8 s), at gaps of T1, 2*T1, 4*T1 then T2, and none after timer H."""
    expected = timer_g_schedule()
    with running_switch(tmp_path / "switch") as switch:
        sipp_dir = tmp_path / "sipp"
        sipp_dir.mkdir()
        result = run_scenario(sipp_dir, switch.port, "u1", int((64 * T1 + 1.5) * 1000))
        assert switch.alive(), switch.log()
    assert result.returncode == 0, f"sipp exited {result.returncode}\n{sipp_errors(sipp_dir)}"
    seen = counts(sipp_dir)
    assert seen["0_INVITE_Sent"] == 1 and seen["0_INVITE_Retrans"] == 0
    assert seen["2_403_Recv"] == 1
    assert seen["2_403_Retrans"] == len(expected), seen
    (log,) = sipp_dir.glob("*_messages.log")
    finals = [at for at, line in received(log.read_text(errors="replace")) if line.startswith("SIP/2.0 403")]
    assert len(finals) == 1 + len(expected)
    measured = gaps(finals)
    for i, (got, want) in enumerate(zip(measured, gaps([0.0, *expected]), strict=True)):
        assert abs(got - want) < TOLERANCE, f"gap {i}: {got:.3f}s, expected {want:.3f}s ({measured})"
    assert max(measured) < T2 + TOLERANCE
    assert finals[-1] - finals[0] < 64 * T1


def test_sipp_over_tcp_gets_403_once(tmp_path: Path) -> None:
    """Over TCP (reliable) timer G is not used: SIPp gets the 403 exactly once."""
    with running_switch(tmp_path / "switch") as switch:
        sipp_dir = tmp_path / "sipp"
        sipp_dir.mkdir()
        result = run_scenario(sipp_dir, switch.port, "t1", int(8 * T1 * 1000 + 1000))
        assert switch.alive(), switch.log()
    assert result.returncode == 0, f"sipp exited {result.returncode}\n{sipp_errors(sipp_dir)}"
    seen = counts(sipp_dir)
    assert seen["2_403_Recv"] == 1
    assert seen["2_403_Retrans"] == 0, seen
