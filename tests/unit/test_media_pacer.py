"""The pacer: every stream ticked once per 20 ms at its slot's offset, without drift,
spread over the interval so that no one burst carries every stream."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from phpvoip.media.pacer import Pacer


class Stream:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.ticks: list[tuple[float, int]] = []

    def tick(self, count: int) -> None:
        self.ticks.append((self.clock.seconds(), count))


def run(clock: Clock, seconds: float) -> None:
    end = clock.seconds() + seconds
    while clock.getDelayedCalls() and clock.getDelayedCalls()[0].getTime() <= end + 1e-9:
        clock.advance(clock.getDelayedCalls()[0].getTime() - clock.seconds())
    clock.advance(max(0.0, end - clock.seconds()))


def test_streams_are_spread_over_four_slots_each_ticked_every_20_ms():
    """Eight streams: two in each 5 ms slot; each is ticked 500 times in 10 s, at
    start + offset + n*20 ms, so each burst holds a quarter of them."""
    clock = Clock()
    clock.advance(1000.0)
    pacer = Pacer(clock)
    streams = [Stream(clock) for _ in range(8)]
    for s in streams:
        pacer.add(s)
    run(clock, 10.0)
    offsets = sorted(round(s.ticks[0][0] - 1000.0, 6) for s in streams)
    assert offsets == [0.005, 0.005, 0.01, 0.01, 0.015, 0.015, 0.02, 0.02]
    for s in streams:
        first = s.ticks[0][0]
        assert len(s.ticks) in (499, 500) and all(count == 1 for _t, count in s.ticks)
        for n, (t, _count) in enumerate(s.ticks):
            assert t == pytest.approx(first + 0.02 * n, abs=1e-9)
    # One wake-up per occupied slot: at most four delayed calls' worth, never one per stream.
    assert len(clock.getDelayedCalls()) == 1


def test_a_late_reactor_ticks_each_slot_with_the_intervals_it_missed():
    """After a 65 ms stall each stream gets the count of its own missed turns, and
    the ones after keep their places (no drift)."""
    clock = Clock()
    pacer = Pacer(clock)
    streams = [Stream(clock) for _ in range(4)]
    for s in streams:
        pacer.add(s)
    run(clock, 0.1)
    before = [len(s.ticks) for s in streams]
    clock.advance(0.065)  # the reactor was busy: several steps overdue at once
    counts = [s.ticks[-1][1] for s in streams]
    assert sum(counts) == 13 and all(c in (3, 4) for c in counts)
    run(clock, 1.0)
    for s, n in zip(streams, before, strict=True):
        assert sum(count for _t, count in s.ticks) == pytest.approx(n + (0.065 + 1.0) / 0.02, abs=1)


def test_the_clock_stops_with_the_last_stream_and_empty_slots_cost_no_wakeup():
    clock = Clock()
    pacer = Pacer(clock)
    one = Stream(clock)
    pacer.add(one)
    run(clock, 1.0)
    # One stream: one wake-up per 20 ms, not one per 5 ms slot.
    assert len(one.ticks) == 50
    pacer.add(one)  # a second add is a no-op
    assert len(pacer) == 1
    pacer.remove(one)
    assert len(pacer) == 0 and clock.getDelayedCalls() == []
    pacer.remove(one)  # idempotent


def test_a_stream_that_raises_keeps_its_place_and_the_others_go_on():
    clock = Clock()
    pacer = Pacer(clock, phases=1)
    good = Stream(clock)

    class Bad:
        def tick(self, count: int) -> None:
            raise RuntimeError("socket gone")

    pacer.add(Bad())
    pacer.add(good)
    run(clock, 0.2)
    assert len(good.ticks) == 10 and len(pacer) == 2


def test_phases_must_be_positive():
    with pytest.raises(ValueError):
        Pacer(Clock(), phases=0)


def test_a_stream_added_from_inside_a_tick_does_not_move_the_others():
    """A tick that starts another stream (a prompt ending starts the next sound on
    another call) keeps the running streams on their 20 ms grid."""
    clock = Clock()
    pacer = Pacer(clock)
    first = Stream(clock)
    late = Stream(clock)

    class Starter(Stream):
        def tick(self, count: int) -> None:
            super().tick(count)
            if len(self.ticks) == 10:
                pacer.add(late)

    starter = Starter(clock)
    pacer.add(first)
    pacer.add(starter)
    run(clock, 1.0)
    for s in (first, starter):
        start = s.ticks[0][0]
        assert [t for t, _c in s.ticks] == pytest.approx([start + 0.02 * n for n in range(len(s.ticks))])
    assert len(late.ticks) >= 40
