"""The console's live feed: one call observer per console, fanned out to every
connected browser as Server-Sent Events.

Events are not forwarded one by one: at 1,000 calls a second that would be
thousands of writes per client per second. The observer only notes what changed
(which calls, that registrations or lines or queues moved) and a flush, at most
every `FLUSH_INTERVAL` seconds, turns the notes into one message each, encoded once
and written to every client: a call that went through five events in a flush window
costs one `call` message (its row read then) or one `call-ended`. The dashboard
counters (`stats`) go out at most once a second, and only when something changed.

It also keeps the calls-per-minute chart: a ring of 60 per-minute counts of call
attempts, advanced by the clock (the hour the dashboard draws).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from phpvoip import inspect
from phpvoip.console.data import call_row, call_rows, registration_count, table_dict
from phpvoip.events import (
    CallAttempted,
    CallEvent,
    LineStateChanged,
    RegistrationEvent,
)
from phpvoip.interfaces import ICallObserver

__all__ = ["ConsoleFeed", "MinuteRing", "sse_message"]

log = Logger()

FLUSH_INTERVAL = 0.2  # seconds: how late a table row may be
STATS_INTERVAL = 1.0  # seconds between two `stats` messages at most
KEEPALIVE = 15.0  # seconds: a comment line, so that a dead client is noticed
MAX_CLIENT_BUFFER = 4 * 1024 * 1024  # bytes queued for one client before it is dropped


def sse_message(kind: str, data: Any) -> bytes:
    """One Server-Sent Event: ``event:`` line, JSON on one ``data:`` line."""
    body = json.dumps(data, separators=(",", ":")).encode()
    return b"event: " + kind.encode() + b"\ndata: " + body + b"\n\n"


class MinuteRing:
    """Call attempts per minute over the last `size` minutes, oldest first."""

    __slots__ = ("counts", "minute", "size")

    def __init__(self, now: float, size: int = 60) -> None:
        self.size = size
        self.counts = [0] * size
        self.minute = int(now // 60)

    def _advance(self, now: float) -> None:
        minute = int(now // 60)
        gap = minute - self.minute
        if gap <= 0:
            return
        if gap >= self.size:
            self.counts = [0] * self.size
        else:
            self.counts = self.counts[gap:] + [0] * gap
        self.minute = minute

    def count(self, now: float) -> None:
        self._advance(now)
        self.counts[-1] += 1

    def values(self, now: float) -> list[int]:
        self._advance(now)
        return list(self.counts)


@implementer(ICallObserver)
class ConsoleFeed:
    """Observes `engine`'s events; `attach` a request to stream to it."""

    def __init__(self, engine: Any, clock: Any) -> None:
        self.engine = engine
        self.clock = clock
        self.clients: list[Any] = []
        self.sessions: dict[int, Any] = {}  # id(request) -> the session it was opened under
        self.session_alive: Any = None  # set by the console: whether a session still holds
        self.per_minute = MinuteRing(clock.seconds())
        self._calls: dict[str, None] = {}  # call ids touched since the last flush, in order
        self._registrations = False
        self._lines = False
        self._queues = False
        self._stats = False
        self._flush_timer: Any = None
        self._stats_timer: Any = None
        self._last_stats = -STATS_INTERVAL
        self._keepalive: Any = None
        self.messages_sent = 0  # encoded messages (each written to every client), for tests

    # -- the observer ----------------------------------------------------------------------

    def call_event(self, event: Any) -> None:
        kind = type(event)
        if kind is CallAttempted:
            self.per_minute.count(event.time)
        if not self.clients:
            return  # nobody watching: nothing to note (a new client gets the whole state)
        if isinstance(event, CallEvent):
            self._calls[event.call.id] = None
            self._stats = True
        elif isinstance(event, RegistrationEvent):
            self._registrations = True
            self._stats = True
        elif kind is LineStateChanged:
            self._lines = True
        elif "queue" in kind.__name__.lower() or "agent" in kind.__name__.lower():
            # The queue module's events (whatever their fields): redraw its tables.
            self._queues = True
        else:
            return
        self._schedule()

    def _stats_due(self) -> None:
        self._stats_timer = None
        self.flush()

    def _schedule(self) -> None:
        if self._flush_timer is None and self.clients:
            self._flush_timer = self.clock.callLater(FLUSH_INTERVAL, self.flush)

    # -- clients -----------------------------------------------------------------------------

    def attach(self, request: Any, session: Any = None) -> None:
        """Stream to `request` (an open GET /events) until it goes away, or until
        `session` ends (`end_session`, or found expired at a keepalive); it gets
        the live calls and the counters at once."""
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        request.write(b"retry: 2000\n\n")
        for row in call_rows(self.engine):
            request.write(sse_message("call", row))
        request.write(sse_message("stats", self.stats()))
        self.clients.append(request)
        self.sessions[id(request)] = session
        request.notifyFinish().addBoth(lambda _: self.detach(request))
        if self._keepalive is None:
            self._keepalive = self.clock.callLater(KEEPALIVE, self._ping)

    def detach(self, request: Any) -> None:
        if request in self.clients:
            self.clients.remove(request)
        self.sessions.pop(id(request), None)
        if not self.clients:
            for timer in (self._flush_timer, self._stats_timer, self._keepalive):
                if timer is not None and timer.active():
                    timer.cancel()
            self._flush_timer = self._stats_timer = self._keepalive = None
            self._calls.clear()

    def close(self) -> None:
        """End every stream (the console is stopping)."""
        for request in list(self.clients):
            self.detach(request)
            request.finish()

    def end_session(self, session: Any) -> None:
        """Close the streams opened under `session` (logged out or expired)."""
        for request in list(self.clients):
            if self.sessions.get(id(request)) is session:
                self.detach(request)
                request.finish()

    def _ping(self) -> None:
        self._keepalive = None
        if self.session_alive is not None:
            for request in list(self.clients):
                session = self.sessions.get(id(request))
                if session is not None and not self.session_alive(session):
                    self.end_session(session)
        self._broadcast(b": keepalive\n\n")
        if self.clients:
            self._keepalive = self.clock.callLater(KEEPALIVE, self._ping)

    def _broadcast(self, data: bytes) -> None:
        for request in list(self.clients):
            transport = getattr(request.channel, "transport", None)
            buffered = len(getattr(transport, "dataBuffer", b"")) + getattr(transport, "_tempDataLen", 0)
            if buffered > MAX_CLIENT_BUFFER:
                # A browser that stopped reading: drop it rather than queue without end.
                log.warn("console: dropping an event stream that does not read ({bytes} bytes queued)",
                         bytes=buffered)
                self.detach(request)
                request.finish()
                continue
            request.write(data)

    # -- what is sent --------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The dashboard's counters."""
        now = self.clock.seconds()
        return {
            "calls_active": len(self.engine.calls),
            "registrations": registration_count(self.engine),
            "calls_per_minute": self.per_minute.values(now),
        }

    def flush(self) -> None:
        """Send what changed since the last flush (see the module docstring)."""
        if self._flush_timer is not None and self._flush_timer.active():
            self._flush_timer.cancel()
        self._flush_timer = None
        if not self.clients:
            return
        now = self.clock.seconds()
        out: list[bytes] = []
        calls, self._calls = self._calls, {}
        live = self.engine.calls
        for call_id in calls:
            bridge = live.get(call_id)
            if bridge is None:
                out.append(sse_message("call-ended", {"id": call_id}))
            else:
                out.append(sse_message("call", call_row(bridge, now)))
        if self._registrations:
            self._registrations = False
            out.append(sse_message("registration", {"count": registration_count(self.engine)}))
        if self._lines:
            self._lines = False
            out.append(sse_message("line", table_dict(inspect.lines(self.engine, now))))
        if self._queues:
            self._queues = False
            out.append(sse_message("queue", {"queues": table_dict(inspect.queues(self.engine)),
                                             "agents": table_dict(inspect.agents(self.engine))}))
        if self._stats:
            if now - self._last_stats >= STATS_INTERVAL:
                self._stats = False
                self._last_stats = now
                out.append(sse_message("stats", self.stats()))
            elif self._stats_timer is None:
                # Not yet a second since the last: come back when it is.
                self._stats_timer = self.clock.callLater(self._last_stats + STATS_INTERVAL - now,
                                                         self._stats_due)
        if out:
            self.messages_sent += len(out)
            self._broadcast(b"".join(out))
