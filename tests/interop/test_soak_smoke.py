"""A short soak (bench/soak.py): calls and digest registrations through the real
switch for 25 s, then every live figure back to its idle level."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import require_program

ROOT = Path(__file__).resolve().parents[2]


def test_soak_smoke_returns_to_idle() -> None:
    """25 s of calls and registrations: none fails, and calls, legs, dialogs,
    transactions, descriptors, GC objects and RSS come back afterwards."""
    require_program("sipp")
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes", "0.42", "--call-rate", "20",
         "--hold", "2", "--reg-rate", "20", "--users", "200", "--sample", "2", "--t1", "0.1",
         "--settle", "10"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert "every figure came back" in run.stdout
    table = run.stdout.split("back to idle?", 1)[1]
    for figure in ("calls", "dialogs", "client transactions", "server transactions", "descriptors",
                   "GC objects", "RSS MiB"):
        assert figure in table
