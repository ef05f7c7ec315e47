"""Smoke of bench/pathological.py: no pathological input makes parsing or the
transport's receive path grow much faster than the input (issue 14)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import pathological

from phpvoip.sip.message import parse


def slow_cases(sizes: list[int], path: str, max_ratio: float) -> tuple[dict, list[str]]:
    """The cases whose time grows more than `max_ratio` between the two sizes. A
    case over the bound is measured again once: other processes share the two
    cores, and a real superlinear path is slow both times."""
    lines: list[str] = []
    results = pathological.measure(sizes, 3, out=lines.append, batch_seconds=0.005, paths=(path,))
    assert len(results) == len(pathological.CASES)
    slow = {key: round(t[1] / t[0], 1) for key, t in results.items() if t[1] > max_ratio * t[0]}
    if slow:
        again = {name: pathological.CASES[name] for name, _ in slow}
        results = pathological.measure(sizes, 5, again, lines.append, batch_seconds=0.01, paths=(path,))
        slow = {key: round(t[1] / t[0], 1) for key, t in results.items() if t[1] > max_ratio * t[0]}
    return slow, lines


def test_parsing_grows_about_linearly() -> None:
    """The parser with its limits lifted, from 2 KiB to 16 KiB of pathological
    content: time grows less than 24x (linear is 8x, quadratic 64x)."""
    slow, lines = slow_cases([2, 16], "parse", 24.0)
    assert not slow, "\n".join(lines)


def test_front_door_answer_grows_about_linearly() -> None:
    """What the switch does with a request it took (limits lifted): the front
    door's checks and answer, from 2 KiB to 16 KiB: less than 24x."""
    slow, lines = slow_cases([2, 16], "answer", 24.0)
    assert not slow, "\n".join(lines)


def test_receive_path_grows_about_linearly() -> None:
    """The transport's receive path with the default limits, from 9 KiB to 60 KiB
    (each case but the body refused at both sizes, the 400 built): less than 20x
    (linear is 6.7x, quadratic 44x)."""
    slow, lines = slow_cases([9, 60], "receive", 20.0)
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


def test_answer_echoing_many_vias_grows_linearly() -> None:
    """The 400 built for a message with thousands of Vias (each echoed, §8.2.6.2)
    costs linear time: 16x the Vias in under 64x the time (quadratic is 256x)."""
    from phpvoip.sip.errors import ParseError
    from phpvoip.sip.uas import error_response

    error = ParseError("too many Via values")

    def answer(data: bytes) -> None:
        assert error_response(error, data) is not None

    small, large = (pathological.many_vias(kib) for kib in (10, 160))
    ratios = []
    for _ in range(2):  # once more if the machine was busy
        ratios.append(pathological.timed(answer, large, 3, 0.01) / pathological.timed(answer, small, 3, 0.01))
        if ratios[-1] < 64:
            break
    assert ratios[-1] < 64, ratios
