"""Smoke of bench/pathological.py: no pathological input makes parsing or the
transport's receive path grow much faster than the input (issue 14)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import pathological

from phpvoip.sip.message import parse


def slow_cases(sizes: list[int], path: str, max_ratio: float) -> tuple[dict, list[str]]:
    lines: list[str] = []
    results = pathological.measure(sizes, 3, out=lines.append, batch_seconds=0.005, paths=(path,))
    assert len(results) == len(pathological.CASES)
    slow = {key: round(t[1] / t[0], 1) for key, t in results.items() if t[1] > max_ratio * t[0]}
    return slow, lines


def test_parsing_grows_about_linearly() -> None:
    """The parser with its limits lifted, from 2 KiB to 16 KiB of pathological
    content: time grows less than 24x (linear is 8x, quadratic 64x)."""
    slow, lines = slow_cases([2, 16], "parse", 24.0)
    assert not slow, "\n".join(lines)


def test_receive_path_grows_about_linearly() -> None:
    """The transport's receive path with the default limits, from 17 KiB to 60 KiB
    (every case refused at both sizes, the 400/513 built): less than 8x (linear
    is 3.5x, quadratic 12.5x)."""
    slow, lines = slow_cases([17, 60], "receive", 8.0)
    assert not slow, "\n".join(lines)


def test_cases_build_the_sizes_they_claim() -> None:
    """Each case adds about the KiB asked for (so the ratios above are honest),
    and every message is well formed where the case means it to be."""
    base = len(pathological.message())
    for name, build in pathological.CASES.items():
        for kib in (2, 16, 60):
            added = len(build(kib)) - base
            assert 0.85 * kib * 1024 < added < 1.05 * kib * 1024, (name, kib, added)
    assert parse(pathological.many_vias(2), pathological.UNLIMITED).via[30].host.startswith("192.0.2.")
