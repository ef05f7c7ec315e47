"""The console's live feed: one call observer per console, fanned out to the
connected browsers as Server-Sent Events.

Events are not forwarded one by one: at 1,000 calls a second that would be
thousands of writes per client per second. Noting an event is O(1) and tiny: the
call's id goes into a dirty set (or a flag is raised for registrations, lines,
queues, the counters), and only when some connected page wants that topic. A
flush, at most every `FLUSH_INTERVAL` seconds, builds each dirty call's row once,
leaves out the calls that began and ended inside the window (no page ever saw
them), encodes one ``calls`` message ``{"upsert": [rows], "ended": [ids]}`` once
and writes it to the pages that subscribed to calls: one write per page per flush.
A stream's first ``calls`` message holds every shown call and ``"all": true``.

Under overload the call pages show at most `max_rows` calls, the longest-running
(`data.call_window`); every ``calls`` message says how many live calls are left
out (``"more"``), and a call that ends makes room for the next one. Thousands of
live calls thus cost a page `max_rows` rows and a flush O(`max_rows` + changes).

A page names what it shows: ``GET /events?topics=stats,lines,queues`` (the
dashboard) gets no call rows at all. Topics: ``calls``, ``stats`` (the dashboard
counters, at most once a second and only when something changed),
``registrations``, ``lines``, ``queues``; no ``topics`` means all of them.

It also keeps the calls-per-minute chart: a ring of 60 per-minute counts of call
attempts, advanced by the clock (the hour the dashboard draws).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from phpvoip import inspect
from phpvoip.console.data import call_row, call_window, registration_count, table_dict
from phpvoip.events import (
    CallAttempted,
    CallEvent,
    LineStateChanged,
    RegistrationEvent,
)
from phpvoip.interfaces import ICallObserver

__all__ = ["TOPICS", "ConsoleFeed", "MinuteRing", "parse_topics", "sse_message"]

log = Logger()

FLUSH_INTERVAL = 0.5  # seconds: how late a table row may be
STATS_INTERVAL = 1.0  # seconds between two `stats` messages at most
KEEPALIVE = 15.0  # seconds: a comment line, so that a dead client is noticed
MAX_CLIENT_BUFFER = 4 * 1024 * 1024  # bytes queued for one client before it is dropped
MAX_ROWS = 500  # calls a page shows at most

TOPICS = frozenset({"calls", "stats", "registrations", "lines", "queues"})


def parse_topics(text: str | None) -> frozenset[str] | None:
    """The topics of ``?topics=a,b``: all of them when absent or empty; None when
    one is unknown (the caller answers 400)."""
    if not text:
        return TOPICS
    topics = frozenset(t.strip() for t in text.split(",") if t.strip())
    if not topics or not topics <= TOPICS:
        return None
    return topics


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

    def __init__(self, engine: Any, clock: Any, max_rows: int = MAX_ROWS) -> None:
        self.engine = engine
        self.clock = clock
        self.max_rows = max_rows
        self.clients: list[Any] = []
        self.topics: dict[int, frozenset[str]] = {}  # id(request) -> what it subscribed to
        self.sessions: dict[int, Any] = {}  # id(request) -> the session it was opened under
        self.session_alive: Any = None  # set by the console: whether a session still holds
        self.per_minute = MinuteRing(clock.seconds())
        self._wanted: dict[str, int] = dict.fromkeys(TOPICS, 0)  # topic -> clients wanting it
        self._calls: dict[str, None] = {}  # call ids touched since the last flush, in order
        self._shown: set[str] = set()  # live calls the call pages have a row for
        self._more = 0  # live calls left out of the pages, as last sent
        self._registrations = False
        self._lines = False
        self._queues = False
        self._stats = False
        self._flush_timer: Any = None
        self._stats_timer: Any = None
        self._last_stats = -STATS_INTERVAL
        self._keepalive: Any = None
        self.messages_sent = 0  # encoded messages (each written to every subscribed client), for tests
        self.rows_built = 0  # call rows built by flushes, for tests and benches

    # -- the observer ----------------------------------------------------------------------

    def call_event(self, event: Any) -> None:
        kind = type(event)
        if kind is CallAttempted:
            self.per_minute.count(event.time)
        if not self.clients:
            return  # nobody watching: nothing to note (a new client gets the whole state)
        wanted = self._wanted
        if isinstance(event, CallEvent):
            if wanted["calls"]:
                self._calls[event.call.id] = None
            if not wanted["stats"]:
                if not wanted["calls"]:
                    return
            else:
                self._stats = True
        elif isinstance(event, RegistrationEvent):
            if not (wanted["registrations"] or wanted["stats"]):
                return
            self._registrations = True
            self._stats = True
        elif kind is LineStateChanged:
            if not wanted["lines"]:
                return
            self._lines = True
        elif "queue" in kind.__name__.lower() or "agent" in kind.__name__.lower():
            # The queue module's events (whatever their fields): redraw its tables.
            if not wanted["queues"]:
                return
            self._queues = True
        else:
            return
        if self._flush_timer is None:
            self._flush_timer = self.clock.callLater(FLUSH_INTERVAL, self.flush)

    def _stats_due(self) -> None:
        self._stats_timer = None
        self.flush()

    # -- clients -----------------------------------------------------------------------------

    def attach(self, request: Any, session: Any = None, topics: frozenset[str] = TOPICS) -> None:
        """Stream `topics` to `request` (an open GET /events) until it goes away, or
        until `session` ends (`end_session`, or found expired at a keepalive); it
        gets the live calls (with ``calls``) and the counters (with ``stats``) at once."""
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")
        first = [b"retry: 2000\n\n"]
        if "calls" in topics:
            rows, more = self.window_rows()
            if not self._wanted["calls"]:
                self._more = more
            self._shown.update(row["id"] for row in rows)
            first.append(sse_message("calls", {"upsert": rows, "ended": [], "more": more, "all": True}))
        if "stats" in topics:
            first.append(sse_message("stats", self.stats()))
        request.write(b"".join(first))
        self.clients.append(request)
        self.topics[id(request)] = topics
        for topic in topics:
            self._wanted[topic] += 1
        self.sessions[id(request)] = session
        request.notifyFinish().addBoth(lambda _: self.detach(request))
        if self._keepalive is None:
            self._keepalive = self.clock.callLater(KEEPALIVE, self._ping)

    def detach(self, request: Any) -> None:
        if request in self.clients:
            self.clients.remove(request)
            for topic in self.topics.pop(id(request), ()):
                self._wanted[topic] -= 1
        self.sessions.pop(id(request), None)
        if not self._wanted["calls"]:
            self._calls.clear()
            self._shown.clear()
        if not self.clients:
            for timer in (self._flush_timer, self._stats_timer, self._keepalive):
                if timer is not None and timer.active():
                    timer.cancel()
            self._flush_timer = self._stats_timer = self._keepalive = None

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
        self._send({None: b": keepalive\n\n"})
        if self.clients:
            self._keepalive = self.clock.callLater(KEEPALIVE, self._ping)

    def _send(self, messages: dict[str | None, bytes]) -> None:
        """Write to each client, in one write, the messages of the topics it
        subscribed to (those under None go to all)."""
        for request in list(self.clients):
            topics = self.topics.get(id(request), TOPICS)
            data = b"".join(m for topic, m in messages.items() if topic is None or topic in topics)
            if not data:
                continue
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

    def window_rows(self) -> tuple[list[dict[str, Any]], int]:
        """The rows the /calls page shows now, and how many live calls it leaves out."""
        ids, more = call_window(self.engine, self.max_rows)
        now = self.clock.seconds()
        return [call_row(self.engine.calls[i], now) for i in ids], more

    def _calls_message(self, now: float) -> bytes | None:
        """The ``calls`` batch since the last: a row for each shown call that changed
        or joined the window, the id of each shown call that ended, and the number
        left out; None when there is nothing to say. A call that began and ended
        within the window, or was never shown, is in neither list."""
        dirty, self._calls = self._calls, {}
        live, shown = self.engine.calls, self._shown
        ids, more = call_window(self.engine, self.max_rows)
        upsert = [call_row(live[i], now) for i in ids if i in dirty or i not in shown]
        window = set(ids)
        ended = [i for i in shown if i not in window]
        self._shown = window
        if not upsert and not ended and more == self._more:
            return None
        self._more = more
        self.rows_built += len(upsert)
        return sse_message("calls", {"upsert": upsert, "ended": ended, "more": more})

    def flush(self) -> None:
        """Send what changed since the last flush (see the module docstring)."""
        if self._flush_timer is not None and self._flush_timer.active():
            self._flush_timer.cancel()
        self._flush_timer = None
        if not self.clients:
            return
        now = self.clock.seconds()
        wanted = self._wanted
        out: dict[str | None, bytes] = {}
        if self._calls:
            message = self._calls_message(now)
            if message is not None:
                out["calls"] = message
        if self._registrations:
            self._registrations = False
            if wanted["registrations"]:
                out["registrations"] = sse_message("registration", {"count": registration_count(self.engine)})
        if self._lines:
            self._lines = False
            out["lines"] = sse_message("line", table_dict(inspect.lines(self.engine, now)))
        if self._queues:
            self._queues = False
            out["queues"] = sse_message("queue", {"queues": table_dict(inspect.queues(self.engine)),
                                                  "agents": table_dict(inspect.agents(self.engine))})
        if self._stats and wanted["stats"]:
            if now - self._last_stats >= STATS_INTERVAL:
                self._stats = False
                self._last_stats = now
                out["stats"] = sse_message("stats", self.stats())
            elif self._stats_timer is None:
                # Not yet a second since the last: come back when it is.
                self._stats_timer = self.clock.callLater(self._last_stats + STATS_INTERVAL - now,
                                                         self._stats_due)
        elif self._stats:
            self._stats = False
        if out:
            self.messages_sent += len(out)
            self._send(out)
