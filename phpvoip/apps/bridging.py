"""`AppCall.bridge`: ring one number or several at once for the caller of an
application, and join the caller to the first that answers.

One number is an ordinary transfer with a ring timeout (`Engine.transfer`).
Several are each routed and given to the modules' ``callout`` (`Engine.destination`),
and the legs that come back are rung together as one `ForkLeg` re-bridged in place
of the application (`Engine.rebridge`). Either way the result says which number
answered, or, in `RebridgeFailed.failures`, how each number failed: a queue counts
an agent's missed call from it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from phpvoip.bridge_rebridge import RebridgeFailed
from phpvoip.interfaces import Cause
from phpvoip.legs.fork import ForkLeg, best_failure

__all__ = ["BridgeAttempt", "NO_ANSWER", "TERMINATED"]

NO_ANSWER = (480, "No Answer")  # what the bridge's ring timer ends a ringing leg with
TERMINATED = (487, "Request Terminated")  # what a cancelled attempt ends them with


class BridgeAttempt:
    """One `bridge()` of an application's call `call_id`, keeping the party `keep`."""

    __slots__ = ("engine", "call_id", "keep", "numbers", "ring_timeout", "failures", "ringing", "cancelled")

    def __init__(self, engine: Any, call_id: str, keep: Any, numbers: str | list[str],
                 ring_timeout: float | None) -> None:
        self.engine = engine
        self.call_id = call_id
        self.keep = keep
        self.numbers = [numbers] if isinstance(numbers, str) else [str(n) for n in numbers]
        self.ring_timeout = ring_timeout
        self.failures: dict[str, tuple[int, str]] = {}
        self.ringing: defer.Deferred | None = None  # the engine's transfer or re-bridge
        self.cancelled = False

    def start(self) -> defer.Deferred:
        """Fires with the number that answered; fails with `RebridgeFailed`."""
        if not self.numbers:
            return defer.fail(ValueError("bridge() needs at least one number"))
        if len(self.numbers) == 1:
            return self._one(self.numbers[0])
        found = [self.engine.destination(self.call_id, self.keep, n).addErrback(self._refused, n)
                 for n in self.numbers]
        return defer.gatherResults(found).addCallback(self._ring_all)

    def cancel(self) -> None:
        """Stop ringing: the numbers ringing are CANCELled and the attempt fails
        with 487; numbers still being routed are never dialled."""
        self.cancelled = True
        if self.ringing is not None:
            self.ringing.cancel()  # a no-op once it has fired

    def _one(self, number: str) -> defer.Deferred:
        d = self.ringing = self.engine.transfer(self.call_id, self.keep, number, by="app",
                                                ring_timeout=self.ring_timeout)

        def failed(failure: Failure) -> None:
            if failure.check(defer.CancelledError):  # cancelled while still being routed
                raise RebridgeFailed(*TERMINATED, {number: TERMINATED})
            failure.trap(RebridgeFailed)
            e = failure.value
            raise RebridgeFailed(e.status, e.reason, {number: (e.status, e.reason)})

        return d.addCallbacks(lambda _: number, failed)

    def _refused(self, failure: Failure, number: str) -> None:
        failure.trap(RebridgeFailed)
        self.failures[number] = (failure.value.status, failure.value.reason)

    def _ring_all(self, found: list[Any]) -> defer.Deferred:
        legs = [(number, answer) for number, answer in zip(self.numbers, found, strict=True)
                if answer is not None]
        if not legs:
            status, reason = best_failure(list(self.failures.values()))
            return defer.fail(RebridgeFailed(status, reason, self.failures))
        numbers = [number for number, _ in legs]
        if self.cancelled:
            for _, (leg, _) in legs:
                leg.hangup(Cause(*TERMINATED, "local"))
            self.failures.update((number, TERMINATED) for number in numbers)
            return defer.fail(RebridgeFailed(*TERMINATED, self.failures))
        modules = {module for _, (_, module) in legs}
        fork = ForkLeg([leg for _, (leg, _) in legs], label="app")
        d = self.ringing = self.engine.rebridge(self.call_id, self.keep, fork, by="app",
                                 module=modules.pop() if len(modules) == 1 else "",
                                 ring_timeout=self.ring_timeout)

        def joined(_: Any) -> str:
            return numbers[fork.branches.index(fork.winner)]

        def failed(failure: Failure) -> None:
            failure.trap(RebridgeFailed)
            e = failure.value
            for index, number in enumerate(numbers):
                # A branch with no answer of its own was cancelled (ring timeout, or
                # the call ended): it gets the outcome of the whole attempt.
                self.failures[number] = fork.outcomes.get(index, (e.status, e.reason))
            raise RebridgeFailed(e.status, e.reason, self.failures)

        return d.addCallbacks(joined, failed)
