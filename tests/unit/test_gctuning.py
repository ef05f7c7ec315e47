"""GcTuning: thresholds at start, survivors frozen, the periodic sweep, undone at stop."""

from __future__ import annotations

import gc
import weakref

from twisted.internet.task import Clock

from phpvoip.gctuning import GcTuning


class _Cycle:
    """An object in a reference cycle with itself: only the collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_start_sets_threshold_and_stop_restores_it() -> None:
    """The young threshold is raised while running and CPython's returns at stop."""
    before = gc.get_threshold()
    tuning = GcTuning(Clock(), threshold0=4321, sweep_interval=0)
    tuning.start()
    try:
        assert gc.get_threshold() == (4321, before[1], before[2])
    finally:
        tuning.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_survivors_of_an_old_pass_are_frozen() -> None:
    """What outlives a collection of generation 1 leaves the collector's later passes."""
    tuning = GcTuning(Clock(), sweep_interval=0)
    tuning.start()
    try:
        kept = [_Cycle() for _ in range(100)]
        frozen = gc.get_freeze_count()
        gc.collect(1)
        assert tuning.freezes == 1
        assert gc.get_freeze_count() >= frozen + len(kept)
        gc.collect(0)
        assert tuning.freezes == 1  # young passes freeze nothing
    finally:
        tuning.stop()


def test_sweep_frees_frozen_garbage_on_the_clock() -> None:
    """A cycle that died while frozen is freed by the sweep every sweep_interval seconds."""
    clock = Clock()
    tuning = GcTuning(clock, sweep_interval=60.0)
    tuning.start()
    try:
        garbage = _Cycle()
        ref = weakref.ref(garbage)
        gc.collect(1)  # frozen with the survivors
        del garbage
        gc.collect()
        assert ref() is not None  # frozen: no pass sees it
        assert tuning.sweeps == 0
        clock.advance(60.0)
        assert tuning.sweeps == 1
        assert ref() is None
        clock.advance(60.0)
        assert tuning.sweeps == 2
    finally:
        tuning.stop()
    assert not clock.getDelayedCalls()
