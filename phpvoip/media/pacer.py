"""One 20 ms clock for every RTP stream the switch sends itself.

Each tick is scheduled at ``start + n * interval``, never at ``now + interval``, so
that a late wake-up delays one packet but not the ones after it: after ten minutes
a stream has sent exactly 30,000 packets. (twisted's LoopingCall does not quite do
this at 20 ms: its ``int(elapsed / interval)`` loses whole intervals to float
rounding and then reports two at once.) One delayed call serves all streams.
"""

from __future__ import annotations

import math
from typing import Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

__all__ = ["Pacer", "Paced"]

_log = Logger()
# A wake-up this close to a deadline (in intervals, 20 ns at 20 ms) counts as on time:
# start + n * interval in floating point may land a hair before the n-th boundary.
_SLACK = 1e-6


class Paced(Protocol):
    def tick(self, count: int) -> None:
        """`count` intervals have passed since the last tick (1 unless the reactor was late)."""


class Pacer:
    """Calls `tick(count)` on every added stream each `interval` seconds."""

    __slots__ = ("_clock", "interval", "_streams", "_start", "_done", "_call")

    def __init__(self, clock: IReactorTime, interval: float = 0.020) -> None:
        self._clock = clock
        self.interval = interval
        self._streams: dict[Paced, None] = {}
        self._start = 0.0
        self._done = 0  # intervals ticked since _start
        self._call: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: Paced) -> None:
        """Tick `stream` from the next interval on (starting the clock if idle)."""
        self._streams[stream] = None
        if self._call is None:
            self._start = self._clock.seconds()
            self._done = 0
            self._schedule()

    def remove(self, stream: Paced) -> None:
        """Stop ticking `stream`; the clock stops when no stream is left."""
        self._streams.pop(stream, None)
        if not self._streams and self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None

    def _schedule(self) -> None:
        due = self._start + (self._done + 1) * self.interval
        self._call = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._fire)

    def _fire(self) -> None:
        elapsed = math.floor((self._clock.seconds() - self._start) / self.interval + _SLACK)
        count = elapsed - self._done
        if count > 0:
            self._done = elapsed
            for stream in list(self._streams):
                try:
                    stream.tick(count)
                except Exception:
                    _log.failure("RTP stream failed to send; it keeps its place", stream=stream)
        if self._streams and (self._call is None or not self._call.active()):
            self._schedule()
