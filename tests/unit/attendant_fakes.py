"""A small `IAppCall` on a task.Clock, for driving the attendant without SIP or RTP.

Every prompt item lasts one simulated second; digits are pressed with `press` (at
once) or `press_at` (at a simulated time); `bridge` rings for one second and then
answers for the numbers in `reachable` and fails 486 for the others. What the
application did is kept in `log` as small tuples, in order.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task
from zope.interface import implementer

from phpvoip.bridge_rebridge import RebridgeFailed
from phpvoip.interfaces import NORMAL_CLEARING, CallGone, Cause, IAppCall

ITEM_SECONDS = 1.0
RING_SECONDS = 1.0


@implementer(IAppCall)
class FakeCall:
    """The application's view of one caller, driven by the test."""

    def __init__(self, clock: task.Clock, reachable: tuple[str, ...] = (), caller: str = "2001",
                 number: str = "800") -> None:
        self.clock = clock
        self.reachable = reachable
        self.id = "call-1"
        self.caller = caller
        self.number = number
        self.answered = False
        self.ended: defer.Deferred = defer.Deferred()
        self.log: list[tuple[Any, ...]] = []
        self.buffer: list[str] = []
        self.gone = False
        self._playing: tuple[defer.Deferred, Any, bool] | None = None
        self._collecting: dict[str, Any] | None = None
        self._pending: set[defer.Deferred] = set()
        self._listeners: list[Any] = []
        self.ring_timeouts: list[float | None] = []

    # -- what the test does ------------------------------------------------------------

    def press(self, digits: str) -> None:
        for digit in digits:
            self._digit(digit)

    def press_at(self, when: float, digits: str) -> None:
        self.clock.callLater(when - self.clock.seconds(), self.press, digits)

    def caller_hangs_up(self) -> None:
        self._end(Cause(200, "BYE", "caller"))

    def entries(self, kind: str) -> list[tuple[Any, ...]]:
        return [e for e in self.log if e[0] == kind]

    # -- IAppCall ----------------------------------------------------------------------

    def _deferred(self) -> defer.Deferred:
        if self.gone:
            return defer.fail(CallGone())
        d: defer.Deferred = defer.Deferred()
        self._pending.add(d)
        d.addBoth(self._settled, d)
        return d

    def _settled(self, result: Any, d: defer.Deferred) -> Any:
        self._pending.discard(d)
        return result

    def answer(self) -> defer.Deferred:
        self.log.append(("answer", self.clock.seconds()))
        self.answered = True
        return defer.succeed(None)

    def ringing(self) -> None:
        self.log.append(("ringing",))

    def play(self, prompt: Any, interruptible: bool = False, loop: bool = False) -> defer.Deferred:
        items = tuple(prompt) if isinstance(prompt, list) else (prompt,)
        self.log.append(("play", items, self.clock.seconds()))
        self.stop()
        d = self._deferred()
        if interruptible and self.buffer:
            d.callback(self.buffer[0])
            return d
        timer = self.clock.callLater(ITEM_SECONDS * len(items), self._played, d)
        self._playing = (d, timer, interruptible)
        return d

    def _played(self, d: defer.Deferred) -> None:
        self._playing = None
        d.callback(None)

    def stop(self) -> None:
        if self._playing is not None:
            d, timer, _ = self._playing
            self._playing = None
            timer.cancel()
            d.callback(None)

    def collect(self, max_digits: int = 1, timeout: float = 10.0, inter_digit_timeout: float = 2.0,
                terminator: str | None = "#") -> defer.Deferred:
        self.log.append(("collect", max_digits, timeout, inter_digit_timeout, self.clock.seconds()))
        d = self._deferred()
        state = {"d": d, "got": "", "max": max_digits, "gap": inter_digit_timeout, "end": terminator,
                 "timer": None}
        self._collecting = state
        while self.buffer and self._collecting is state:
            self._take(state, self.buffer.pop(0))
        if self._collecting is state:
            state["timer"] = self.clock.callLater(timeout if not state["got"] else inter_digit_timeout,
                                                  self._collected, state)
        return d

    def _take(self, state: dict[str, Any], digit: str) -> None:
        if state["end"] and digit == state["end"]:
            self._collected(state)
            return
        state["got"] += digit
        if len(state["got"]) >= state["max"]:
            self._collected(state)
        elif state["timer"] is not None:
            state["timer"].cancel()
            state["timer"] = self.clock.callLater(state["gap"], self._collected, state)

    def _collected(self, state: dict[str, Any]) -> None:
        if state["timer"] is not None and state["timer"].active():
            state["timer"].cancel()
        self._collecting = None
        state["d"].callback(state["got"])

    def _digit(self, digit: str) -> None:
        self.log.append(("digit", digit, self.clock.seconds()))
        for listener in self._listeners:
            listener(digit)
        if self._collecting is not None:
            self._take(self._collecting, digit)
            return
        self.buffer.append(digit)
        if self._playing is not None and self._playing[2]:
            d, timer, _ = self._playing
            self._playing = None
            timer.cancel()
            d.callback(digit)

    def flush_digits(self) -> None:
        self.buffer.clear()

    def record(self, path: str, max_seconds: float = 60.0, terminator: str = "#",
               silence_seconds: float | None = None) -> defer.Deferred:
        self.log.append(("record", path))
        return defer.succeed(0.0)

    def hold(self, music: Any = None) -> None:
        self.log.append(("hold", music))

    def transfer(self, number: str) -> defer.Deferred:
        self.log.append(("transfer", number, self.clock.seconds()))
        self._end(Cause(200, "transferred", "switch"))
        return defer.succeed(None)

    def bridge(self, numbers: Any, ring_timeout: float | None = None) -> defer.Deferred:
        self.log.append(("bridge", numbers, self.clock.seconds()))
        self.ring_timeouts.append(ring_timeout)
        d = self._deferred()
        number = numbers if isinstance(numbers, str) else numbers[0]

        def rung() -> None:
            if number in self.reachable:
                d.callback(number)
                self._end(Cause(200, "transferred", "switch"))
            else:
                d.errback(RebridgeFailed(486, "Busy Here"))

        self.clock.callLater(RING_SECONDS, rung)
        return d

    def hangup(self, cause: Cause | None = None) -> None:
        if not self.gone:
            self.log.append(("hangup", self.clock.seconds()))
        self._end(cause or NORMAL_CLEARING)

    def on_digit(self, callback: Any) -> None:
        self._listeners.append(callback)

    def _end(self, cause: Cause) -> None:
        if self.gone:
            return
        self.gone = True
        if self._playing is not None:
            self._playing[1].cancel()
            self._playing = None
        if self._collecting is not None and self._collecting["timer"] is not None:
            self._collecting["timer"].cancel()
        self._collecting = None
        for d in list(self._pending):
            if not d.called:
                d.errback(CallGone(cause))
        self.ended.callback(cause)
