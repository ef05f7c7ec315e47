"""One 20 ms clock for every RTP stream the switch sends itself.

Each tick is scheduled at ``start + n * step``, never at ``now + step``, so that a
late wake-up delays one packet but not the ones after it: after ten minutes a
stream has sent exactly 30,000 packets. (twisted's LoopingCall does not quite do
this at 20 ms: its ``int(elapsed / interval)`` loses whole intervals to float
rounding and then reports two at once.) One delayed call serves all streams.

The streams are spread over `phases` equal slots of the interval (four of 5 ms by
default): each stream is put in the least crowded slot when added and is ticked
every interval at that slot's offset. Sending every stream in one burst each 20 ms
made the last streams of a burst of hundreds wait for all the others, so their
packets left several milliseconds later than the first ones' did, and by varying
amounts (jitter that grows with the number of streams); a quarter of the burst
every 5 ms cuts that by four, for three more wake-ups per interval. A slot with no
streams costs no wake-up.
"""

from __future__ import annotations

import math
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

__all__ = ["Pacer", "Paced"]

_log = Logger()
# A wake-up this close to a deadline (in steps) counts as on time: start + n * step
# in floating point may land a hair before the n-th boundary.
_SLACK = 1e-6


class Paced(Protocol):
    def tick(self, count: int) -> None:
        """`count` intervals have passed since the last tick (1 unless the reactor was late)."""


class Pacer:
    """Calls `tick(count)` on every added stream each `interval` seconds, each
    stream at the offset of its slot (one of `phases`) within the interval."""

    __slots__ = ("_clock", "interval", "phases", "_step", "_slots", "_slot_of", "_start", "_done", "_call")

    def __init__(self, clock: IReactorTime, interval: float = 0.020, phases: int = 4) -> None:
        if phases < 1:
            raise ValueError(f"phases must be at least 1, not {phases}")
        self._clock = clock
        self.interval = interval
        self.phases = phases
        self._step = interval / phases
        self._slots: list[dict[Paced, None]] = [{} for _ in range(phases)]
        self._slot_of: dict[Paced, int] = {}
        self._start = 0.0
        self._done = 0  # steps ticked since _start (step j belongs to slot j % phases)
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._slot_of)

    def add(self, stream: Paced) -> None:
        """Tick `stream` from its slot's next turn on (starting the clock if idle)."""
        if stream in self._slot_of:
            return
        if not self._slot_of:  # idle: the clock starts now
            self._start = self._clock.seconds()
            self._done = 0
        slot = min(range(self.phases), key=lambda i: len(self._slots[i]))
        self._slots[slot][stream] = None
        self._slot_of[stream] = slot
        self._reschedule()

    def remove(self, stream: Paced) -> None:
        """Stop ticking `stream`; the clock stops when no stream is left."""
        slot = self._slot_of.pop(stream, None)
        if slot is None:
            return
        del self._slots[slot][stream]
        if not self._slot_of:
            self._cancel()

    def _cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _next_step(self) -> int:
        """The next step after the last one ticked whose slot has streams."""
        phases, slots = self.phases, self._slots
        for j in range(self._done + 1, self._done + 1 + phases):
            if slots[j % phases]:
                return j
        raise AssertionError("no stream to tick")  # callers check there is one

    def _reschedule(self) -> None:
        """Wake up at the next occupied step (a new stream may be due sooner)."""
        self._cancel()
        due = self._start + self._next_step() * self._step
        self._call = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        self._call = None
        phases, done = self.phases, self._done
        elapsed = math.floor((self._clock.seconds() - self._start) / self._step + _SLACK)
        if elapsed > done:
            self._done = elapsed
            # Each slot's due turns in (done, elapsed], slots taken in the order they fell due.
            first = done + 1
            for j in range(first, first + min(phases, elapsed - done)):
                slot = j % phases
                count = (elapsed - slot) // phases - (done - slot) // phases
                for stream in list(self._slots[slot]):
                    try:
                        stream.tick(count)
                    except Exception:
                        _log.failure("RTP stream failed to send; it keeps its place", stream=stream)
        if self._slot_of and self._call is None:
            self._reschedule()
