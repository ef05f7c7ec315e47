"""Small named fakes for the queue's unit tests: an `IAppCall` whose bridge the test
answers, and call events as the engine would publish them."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task

from phpvoip.apps.queue import QueueLogic
from phpvoip.apps.queue_config import parse_settings
from phpvoip.bridge_rebridge import TRANSFERRED
from phpvoip.callrecord import CallRecord
from phpvoip.events import CallAttempted, CallEnded, CallRouted, CallTransferred
from phpvoip.interfaces import CallGone, Cause
from phpvoip.settings import Section


class BridgeRefused(Exception):
    """What `RebridgeFailed` looks like to the queue: status, reason, failures."""

    def __init__(self, status: int, reason: str, failures: dict[str, tuple[int, str]]) -> None:
        super().__init__(f"{status} {reason}")
        self.status, self.reason, self.failures = status, reason, failures


class FakeCall:
    """An `IAppCall` that records what the queue asks; the test settles bridges."""

    def __init__(self, call_id: str, caller: str, number: str = "700") -> None:
        self.id, self.caller, self.number = call_id, caller, number
        self.answered = False
        self.ended: defer.Deferred = defer.Deferred()
        self.played: list[Any] = []
        self.holds = 0
        self.bridges: list[tuple[Any, float | None, defer.Deferred]] = []
        self.transferred: list[str] = []
        self.hung_up: list[Cause | None] = []
        self.digit_callbacks: list[Any] = []
        self.cancelled: list[Any] = []  # the numbers of bridges the queue cancelled

    def answer(self) -> defer.Deferred:
        self.answered = True
        return defer.succeed(None)

    def play(self, prompt: Any, interruptible: bool = False, loop: bool = False) -> defer.Deferred:
        self.played.append(prompt)
        return defer.succeed(None)

    def hold(self, music: Any = None) -> None:
        self.holds += 1

    def bridge(self, numbers: Any, ring_timeout: float | None = None) -> defer.Deferred:
        def stop_ringing(d: defer.Deferred) -> None:
            # As AppCall does: the ringing numbers are CANCELled, the bridge fails 487.
            rung = [numbers] if isinstance(numbers, str) else numbers
            self.cancelled.append(numbers)
            terminated = (487, "Request Terminated")
            d.errback(BridgeRefused(*terminated, {n: terminated for n in rung}))

        d: defer.Deferred = defer.Deferred(stop_ringing)
        self.bridges.append((numbers, ring_timeout, d))
        return d

    def transfer(self, number: str) -> defer.Deferred:
        self.transferred.append(number)
        return defer.succeed(None)

    def hangup(self, cause: Cause | None = None) -> None:
        self.hung_up.append(cause)
        self.gone(cause)

    def on_digit(self, callback: Any) -> None:
        self.digit_callbacks.append(callback)

    def press(self, digit: str) -> None:
        for callback in self.digit_callbacks:
            callback(digit)

    def gone(self, cause: Cause | None = None) -> None:
        """The call is over: a pending bridge fails with CallGone, `ended` fires."""
        for _, _, d in self.bridges:
            if not d.called:
                d.errback(CallGone(cause))
        if not self.ended.called:
            self.ended.callback(cause)

    # -- the test's side of a bridge ------------------------------------------------

    @property
    def ringing(self) -> Any:
        """The numbers of the bridge in progress, or None."""
        if self.bridges and not self.bridges[-1][2].called:
            return self.bridges[-1][0]
        return None

    def agent_answers(self, number: str) -> None:
        d = self.bridges[-1][2]
        d.callback(number)
        if not self.ended.called:
            self.ended.callback(TRANSFERRED)

    def agents_miss(self, status: int = 408) -> None:
        numbers, _, d = self.bridges[-1]
        listed = numbers if isinstance(numbers, list) else [numbers]
        d.errback(BridgeRefused(status, "missed", {n: (status, "missed") for n in listed}))


class Switch:
    """Publishes call events to a queue as the engine would, with one record per call."""

    def __init__(self, clock: task.Clock, logic: QueueLogic) -> None:
        self.clock = clock
        self.logic = logic
        self.records: dict[str, CallRecord] = {}
        self.count = 0

    def call(self, caller: str, callee: str) -> str:
        """A call from `caller` routed to `callee` (attempted and routed)."""
        self.count += 1
        record = CallRecord(f"call-{self.count}", f"sip-{self.count}", caller, callee, self.clock.seconds())
        record.routed_to = callee
        self.records[record.id] = record
        self.logic.call_event(CallAttempted(record, self.clock.seconds()))
        self.logic.call_event(CallRouted(record, self.clock.seconds()))
        return record.id

    def transferred(self, call_id: str, target: str, by: str) -> None:
        self.logic.call_event(CallTransferred(self.records[call_id], self.clock.seconds(), target, by))

    def end(self, call_id: str) -> None:
        record = self.records.pop(call_id)
        record.end = self.clock.seconds()
        self.logic.call_event(CallEnded.of(record, self.clock.seconds()))


def settings(**keys: Any) -> Any:
    data = {"number": "700", "agents": ["1001", "1002", "1003"], "announce_frequency": 0}
    data.update(keys)
    return parse_settings(Section("test.yaml", "modules[0]", data))


def make_queue(**keys: Any) -> tuple[task.Clock, QueueLogic, list[Any], Switch]:
    clock = task.Clock()
    events: list[Any] = []
    logic = QueueLogic("q", settings(**keys), clock, events.append)
    logic.dispatch()
    return clock, logic, events, Switch(clock, logic)


def join(logic: QueueLogic, switch: Switch, caller: str = "2001") -> FakeCall:
    """A caller dials the queue: a call record (routed to the queue) and its app call."""
    call_id = switch.call(caller, logic.settings.number)
    call = FakeCall(call_id, caller)
    logic.handle(call)
    return call
