"""How long the cyclic garbage collector stops the switch.

CPython's collector runs on the reactor thread: while it walks the heap no SIP
message is read and no timer fires, so a long pause looks like packet loss to the
peers (T1 is 500 ms). `GcWatch` hangs on `gc.callbacks` and times every
collection, start to stop, into plain counters and a fixed-bucket histogram that
the manhole's ``stats()`` and the metrics endpoint read; it costs two clock reads
per collection and nothing per message.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

__all__ = ["PAUSE_BUCKETS", "GcWatch"]

# Upper bounds (seconds) of the pause histogram; a last bucket takes the rest.
PAUSE_BUCKETS: tuple[float, ...] = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class GcWatch:
    """Times each collection; `clock` returns seconds (time.perf_counter by
    default; tests pass a fake and call `_callback` themselves).

    `count`, `total` and `worst` cover every generation; `by_generation` counts
    collections per generation, `buckets[i]` the pauses no longer than
    `PAUSE_BUCKETS[i]` and not counted in an earlier bucket (the last one: longer
    than every bound)."""

    __slots__ = ("clock", "count", "total", "worst", "by_generation", "buckets", "_started", "_running")

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.count = 0
        self.total = 0.0
        self.worst = 0.0
        self.by_generation = [0, 0, 0]
        self.buckets = [0] * (len(PAUSE_BUCKETS) + 1)
        self._started: float | None = None
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """Listen to the collector (a second start is a no-op)."""
        if not self._running:
            gc.callbacks.append(self._callback)
            self._running = True

    def stop(self) -> None:
        """Stop listening; the figures so far stay."""
        if self._running:
            # Compare by identity: bound methods are made afresh on each access.
            gc.callbacks[:] = [c for c in gc.callbacks if getattr(c, "__self__", None) is not self]
            self._running = False
            self._started = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        started = self._started
        if started is None:  # started listening in the middle of a collection
            return
        self._started = None
        self.record(self.clock() - started, info.get("generation", 2))

    def record(self, pause: float, generation: int = 2) -> None:
        """Count one collection that stopped everything for `pause` seconds."""
        self.count += 1
        self.total += pause
        if pause > self.worst:
            self.worst = pause
        if 0 <= generation < len(self.by_generation):
            self.by_generation[generation] += 1
        index = 0
        for bound in PAUSE_BUCKETS:
            if pause <= bound:
                break
            index += 1
        self.buckets[index] += 1

    def snapshot(self) -> dict[str, float | int]:
        """The figures as plain numbers, for ``stats()``."""
        return {
            "gc_pauses": self.count,
            "gc_pause_seconds": self.total,
            "gc_pause_worst_seconds": self.worst,
        }
