"""A short run of the waiting-callers benchmark (bench/queue_wait.py): 20 callers wait
in the real switch's queue, each hearing music on hold the switch paces itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require_program

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PORTS = "45800-45899"  # the queue's RTP ports: no other test's range
CALLERS, SECONDS = 20, 3
STEP = re.compile(r"^\s+(\d+) callers\s+(\d+) answered\s+(\d+) silent\s+(\d+) recv loss\s+([\d.]+)%"
                  r"\s+jitter p50 ([\d.]+) p99 ([\d.]+) ms.*\s(held|FAIL)", re.M)


def test_queue_wait_bench_smoke() -> None:
    """20 callers for 3 s: all answered, every one hears the queue (not silence) at 50
    packets/s, and the bench's jitter figures and verdict come out consistent."""
    require_program("sipp")
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "queue_wait.py"), "--steps", str(CALLERS),
         "--duration", str(SECONDS), "--settle", "0.5", "--rate", "50", "--pause", "0", "--retries", "1",
         "--ports", PORTS],
        cwd=ROOT, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    steps = STEP.findall(run.stdout)
    assert steps, run.stdout + run.stderr
    callers, answered, silent, received, loss, p50, p99, verdict = steps[-1]
    assert (int(callers), int(answered), int(silent)) == (CALLERS, CALLERS, 0), run.stdout
    # 50 packets/s for SECONDS, give or take the one in flight at either end, less what a
    # stall of the shared machine (over 100 ms: the endpoint skips those frames) cost.
    assert CALLERS * 50 * SECONDS * 0.95 <= int(received) <= CALLERS * 50 * SECONDS + 2 * CALLERS, run.stdout
    assert float(loss) < 5.0, run.stdout
    assert 0.0 <= float(p50) <= float(p99), run.stdout
    assert float(p50) < 5.0, run.stdout  # the typical packet is on time
    # The jitter goal itself (p99 < 5 ms) is the benchmark's; on a busy shared machine
    # a 3 s sample may miss it twice, so here only the bench's verdict is checked.
    assert run.returncode == (0 if verdict == "held" else 1), run.stdout + run.stderr
