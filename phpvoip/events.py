"""Switch events: one stream of what happens to calls, registrations and lines,
many observers.

Every call attempt, refused ones included, produces in order:

    CallAttempted ─→ CallRouted ─→ CallRinging ─→ CallAnswered ─→ CallTransferred* ─→ CallEnded
         │               │              │                                                ▲
         └───────────────┴──────────────┴────────────── (refused, cancelled, failed) ───┘

`CallAttempted` and `CallEnded` come exactly once per attempt; the others only when
they happen (a call refused with 403 goes straight from attempt to end). Each event is
a small frozen object carrying the call's `CallRecord` (the same object for the whole
call, filled in as it goes) and the clock time of the event.

The same stream carries what the registrar and the outside lines do: `Registered`
(a binding made or refreshed), `Unregistered` (removed or expired),
`RegistrationRefused` (a REGISTER answered with an error: a plain digest challenge
is not a refusal, a wrong password is) and `LineStateChanged` (a line's
registration upstream moved, e.g. registered -> retrying). Every event derives from
`Event` and has its `time`; call events add `call`. Observers pick what they want
by type and ignore the rest.

Observers provide `ICallObserver` and are registered with the engine
(``engine.add_observer``). They are called synchronously on the reactor thread, so
they must not block; one that raises is logged and the call, and the other
observers, go on. Call records, metrics, the manhole and the console all subscribe
here: none of them keeps counters of its own or reaches into legs.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.callrecord import CallRecord
from phpvoip.interfaces import ICallObserver

__all__ = [
    "CallAnswered",
    "CallAttempted",
    "CallEnded",
    "CallEvent",
    "CallEvents",
    "CallRinging",
    "CallRouted",
    "CallTransferred",
    "Event",
    "LineStateChanged",
    "RecentCalls",
    "Registered",
    "RegistrationEvent",
    "RegistrationRefused",
    "Unregistered",
]

log = Logger()


class Event:
    """What every event on the stream has: `time`, the switch clock's seconds when
    it happened (each subclass declares the field, so that call events keep their
    ``(call, time, ...)`` order)."""

    __slots__ = ()
    time: float


@dataclass(frozen=True, slots=True)
class CallEvent(Event):
    """What every call event has: the call's record and when it happened."""

    call: CallRecord
    time: float


@dataclass(frozen=True, slots=True)
class CallAttempted(CallEvent):
    """An INVITE arrived (or an application placed a call); nothing decided yet.
    `source` is the Address it came from, None for an application's call."""

    source: Any = None


@dataclass(frozen=True, slots=True)
class CallRouted(CallEvent):
    """Both modules are found: `route` is the route that matched (None when no
    route did and the call went on unchanged), `inbound` and `outbound` the names of
    the modules of the caller and of the destination."""

    route: Any = None
    inbound: str = ""
    outbound: str = ""


@dataclass(frozen=True, slots=True)
class CallRinging(CallEvent):
    """The destination rings: the first provisional response above 100 (180, 183)."""

    status: int = 180


@dataclass(frozen=True, slots=True)
class CallAnswered(CallEvent):
    """The destination answered; `setup_s` is the time since the attempt."""

    setup_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CallTransferred(CallEvent):
    """The call was re-bridged: `target` now talks to the party that stayed.
    `by` is "caller", "callee" or "switch" (who asked: a REFER, an application),
    `outbound` the module of the new leg."""

    target: str = ""
    by: str = ""
    outbound: str = ""


@dataclass(frozen=True, slots=True)
class CallEnded(CallEvent):
    """The attempt is over, answered or not. The fields repeat the record's final
    values so that an observer need not know the record's layout."""

    disposition: str = ""
    status: int | None = None
    cause: str = ""
    q850: int | None = None
    reason: str = ""
    hung_up_by: str = ""
    setup_s: float | None = None
    talk_s: float = 0.0
    duration_s: float = 0.0

    @classmethod
    def of(cls, record: CallRecord, time: float) -> CallEnded:
        return cls(
            record, time, record.disposition, record.status, record.cause, record.q850, record.reason,
            record.hangup_by, record.setup_time, record.duration, record.total_time,
        )


@dataclass(frozen=True, slots=True)
class RegistrationEvent(Event):
    """What the registrar's events have: the registrar `module`'s name and the
    address-of-record (its user part, as the registrar keys it; "" when the
    request named none)."""

    time: float
    module: str
    aor: str


@dataclass(frozen=True, slots=True)
class Registered(RegistrationEvent):
    """A binding was made (`refresh` False) or renewed for `expires` seconds;
    `source` is the Address the REGISTER came from."""

    contact: str = ""
    expires: int = 0
    source: Any = None
    refresh: bool = False


@dataclass(frozen=True, slots=True)
class Unregistered(RegistrationEvent):
    """A binding is gone: `reason` is "unregistered" (the phone asked: expires 0
    or ``Contact: *``) or "expired" (not refreshed in time)."""

    contact: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RegistrationRefused(RegistrationEvent):
    """A REGISTER was answered `status` `reason` (403, 404, 423, 400, 503, or 401
    after wrong credentials); `source` is where it came from."""

    status: int = 0
    reason: str = ""
    source: Any = None


@dataclass(frozen=True, slots=True)
class LineStateChanged(Event):
    """An outside line's registration upstream went from `old` to `new` (the
    `phpvoip.modules.line_state.LineState` names)."""

    time: float
    line: str
    old: str
    new: str


class CallEvents:
    """The publisher: a list of observers and a `publish` that protects the switch
    from each of them. Carries every `Event`, not only call events (the name is
    older than the registration and line events)."""

    __slots__ = ("observers",)

    def __init__(self) -> None:
        self.observers: tuple[Any, ...] = ()

    def add(self, observer: Any) -> None:
        """Subscribe `observer` (an `ICallObserver`); a second add is a no-op."""
        if observer not in self.observers:
            self.observers = (*self.observers, observer)

    def remove(self, observer: Any) -> None:
        self.observers = tuple(o for o in self.observers if o is not observer)

    def publish(self, event: Event) -> None:
        for observer in self.observers:
            try:
                observer.call_event(event)
            except Exception:
                call = getattr(event, "call", None)
                log.failure(
                    "observer {observer!r} failed on {event}; the switch goes on",
                    observer=observer, event=type(event).__name__,
                    callID=call.call_id if call is not None else None,
                )


@implementer(ICallObserver)
class RecentCalls:
    """The records of the last `size` ended calls, newest last (for tests, the
    manhole and the console until the CDR store takes over)."""

    def __init__(self, size: int = 1000) -> None:
        self.records: deque[CallRecord] = deque(maxlen=size)

    def call_event(self, event: Event) -> None:
        if type(event) is CallEnded:
            self.records.append(event.call)
