"""A short run of the media benchmark (bench/media.py): 20 relayed calls through the
real switch with its own relay and with a real rtpengine, RTP from the generator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import require_program

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
PORTS = "45400-45499"  # no other test's range; the relay and rtpengine take turns in it
CALLS, SECONDS = 20, 3
STEP = re.compile(r"^\s+(relay|rtpengine)\s+(\d+) calls\s+(\d+) sent\s+(\d+) recv loss\s+([\d.]+)%"
                  r".* jitter p50 ([\d.]+) p99 ([\d.]+) ms.*\s(held|FAIL)", re.M)


def test_media_bench_smoke() -> None:
    """20 calls for 3 s through the relay and through rtpengine: every packet the
    generator sent (50 pps each way on each leg) comes out of the other side."""
    require_program("sipp")
    require_program("rtpengine")
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "media.py"), "--steps", str(CALLS), "--duration", str(SECONDS),
         "--rate", "50", "--pause", "0", "--rates", "", "--ports", PORTS, "--only", "relay,rtpengine"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    steps = {m.group(1): m for m in STEP.finditer(run.stdout)}
    assert set(steps) == {"relay", "rtpengine"}, run.stdout
    expected = CALLS * 2 * 50 * SECONDS
    for mode, m in steps.items():
        calls, sent, received = int(m.group(2)), int(m.group(3)), int(m.group(4))
        assert (calls, sent, received) == (CALLS, expected, expected), (mode, run.stdout)
        assert float(m.group(5)) == 0.0 and m.group(8) == "held", (mode, run.stdout)
        assert float(m.group(7)) < 5.0, (mode, run.stdout)
