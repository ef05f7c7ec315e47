"""How the switch runs CPython's cyclic garbage collector, so that it holds
10,000 calls without stopping for a second.

Why: the collector's full pass walks every tracked object. A held call is about
140 of them (legs, dialogs, kept requests and their header lines), so at 10,000
calls a full pass took over a second on the reactor thread, and CPython starts
one each time the old generation grows by a quarter: SIPp saw 9 % of its calls
retransmitted and a setup p99 of 1.1 s (``bench/concurrency.sh``).

What: a call frees itself by reference counting when it ends (no reference
cycles on the call path; ``Engine._ask`` was the last one), so the objects that
outlive two young collections are live state, not garbage. `GcTuning` freezes
them (``gc.freeze``) at the end of every collection of generation 1 or 2, which
keeps them out of later full passes: a full pass then walks only what became old
since the last one. Frozen objects that die by reference counting are freed as
usual; only garbage held in a cycle among frozen objects would stay, so every
`sweep_interval` seconds (default 10 minutes) everything is unfrozen, collected
once and frozen again (that one pass costs what a full pass used to, ~1 s at
10,000 calls, but once per interval, not every few seconds). The young
generation's threshold is raised from 700 to `threshold0` (5,000) allocations:
fewer young passes, each a few milliseconds.
"""

from __future__ import annotations

import gc
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["GcTuning"]


class GcTuning:
    """Thresholds at start, freezing of survivors, and the periodic sweep."""

    __slots__ = ("clock", "threshold0", "sweep_interval", "sweeps", "freezes", "_old", "_call", "_running")

    def __init__(self, clock: IReactorTime, threshold0: int = 5000, sweep_interval: float = 600.0) -> None:
        self.clock = clock
        self.threshold0 = threshold0
        self.sweep_interval = sweep_interval
        self.sweeps = 0
        self.freezes = 0
        self._old: tuple[int, int, int] | None = None
        self._call: IDelayedCall | None = None
        self._running = False

    def start(self) -> None:
        """Set the threshold, freeze what start-up made, listen to the collector."""
        if self._running:
            return
        self._running = True
        self._old = gc.get_threshold()
        gc.set_threshold(self.threshold0, self._old[1], self._old[2])
        gc.freeze()
        gc.callbacks.append(self._callback)
        if self.sweep_interval > 0:
            self._call = self.clock.callLater(self.sweep_interval, self._sweep)

    def stop(self) -> None:
        """Back to CPython's defaults: thresholds restored, nothing frozen."""
        if not self._running:
            return
        self._running = False
        gc.callbacks[:] = [c for c in gc.callbacks if getattr(c, "__self__", None) is not self]
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._old is not None:
            gc.set_threshold(*self._old)
        gc.unfreeze()

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        # At "stop" the young generations are empty: what is left outside the
        # permanent generation is the survivors of this pass, old and alive.
        if phase == "stop" and info.get("generation", 0) >= 1:
            gc.freeze()
            self.freezes += 1

    def sweep(self) -> int:
        """Collect everything once, frozen objects included; return what it freed."""
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        self.sweeps += 1
        return freed

    def _sweep(self) -> None:
        self._call = None
        try:
            self.sweep()
        finally:
            if self._running:
                self._call = self.clock.callLater(self.sweep_interval, self._sweep)
