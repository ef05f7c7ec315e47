"""Call detail records: one row per call attempt, answered or not, in the SQLite store.

`CallDetailRecords` is a call observer: each `CallEnded` becomes a row tuple (the
columns are `phpvoip.store.sqlite.CDR_COLUMNS`) appended to a queue in memory, and
the queue is written by the store's own database thread (`SqliteStore.write_cdr`),
so the reactor never waits on the disk and there is one writer to the file:

- a commit carries at most `batch` rows; a full batch is written at once, a partial
  one when `flush_interval` seconds have passed since its first row was queued;
- one write is in flight at a time; rows that arrive meanwhile gather for the next;
- a write that fails is logged and its rows go back to the front of the queue, to be
  tried again at the next flush (the insert ignores ids already there, so a batch
  whose commit succeeded unreported is not written twice);
- the queue is bounded (`max_queue` rows, 20,000 by default: about a minute and a
  half of 200 calls/s). While the disk takes no writes the queue fills; past the
  bound each new record is dropped, logged at error level with its fields (the log
  is then its only copy), and counted in `dropped`;
- `stop()` writes everything queued (calls hung up by the shutdown included),
  trying a failing write three times `flush_interval` apart, and then logs each row
  it could not write before firing, so that the store can close.

Row ids are the switch's call id (``call-17``, counted from 1 at each start) after
a boot id made of the start time and a random suffix (``20261203T101500Z-3fa9-call-17``),
so that the rows of two runs never collide.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip.events import CallEnded
from phpvoip.interfaces import ICallObserver
from phpvoip.opsconfig import CdrSettings
from phpvoip.sip.ids import new_tag
from phpvoip.store import format_source

__all__ = ["CallDetailRecords", "CdrWriteError", "boot_id", "cdr_row", "search_records", "select_records"]

log = Logger()

DEFAULT_MAX_QUEUE = 20_000
STOP_ATTEMPTS = 3


class CdrWriteError(Exception):
    """A batch of call records could not be written (its rows are queued again)."""


def boot_id(now: float) -> str:
    """What makes this run's row ids unique: the start time (UTC) and a random
    suffix, for two switches started in the same second on one file."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)) + "-" + new_tag()[:4]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def cdr_row(boot: str, event: CallEnded) -> tuple[Any, ...]:
    """The `CDR_COLUMNS` tuple for one ended attempt; text that is not known (a call
    refused before it was routed has no outbound module) is NULL, not ''."""
    record = event.call
    return (
        f"{boot}-{record.id}",
        record.call_id,
        record.caller,
        record.callee,
        record.routed_from or None,
        record.routed_to or None,
        record.inbound_module or None,
        record.outbound_module or None,
        format_source(record.source),
        _ms(record.start),
        _ms(record.ring),
        _ms(record.answer),
        _ms(event.time),
        _ms(event.duration_s),
        _ms(event.talk_s),
        event.disposition,
        event.status,
        event.cause or None,
        event.q850,
        event.reason or None,
        event.hung_up_by or None,
        " ".join(record.transfers) or None,
        *media_columns(record.media),
    )


def media_columns(media: dict | None) -> tuple[Any, ...]:
    """The `CDR_MEDIA_COLUMNS` for a call's media counters: packets and lost summed
    over what each party sent (a transfer target counts for the side it took), the
    worst jitter; all NULL with direct media."""
    if not media:
        return (None,) * 6
    sides = media.get("sides", {})
    figures = {"caller": [0, 0, 0.0], "callee": [0, 0, 0.0]}
    for direction, counts in media.items():
        source, arrow, _ = direction.partition(">")
        if not arrow or not isinstance(counts, dict):
            continue
        party = figures.get(sides.get(source, "caller" if source == "a" else "callee"))
        if party is None:
            continue
        party[0] += counts.get("packets", 0)
        party[1] += counts.get("lost", 0)
        party[2] = max(party[2], counts.get("jitter_ms", 0.0))
    caller, callee = figures["caller"], figures["callee"]
    return (caller[0], callee[0], caller[1], callee[1], round(caller[2], 3), round(callee[2], 3))


@implementer(ICallObserver)
class CallDetailRecords:
    """Hears `CallEnded` and writes the rows to `store` in batches (see the module
    docstring for when, and for what happens when the disk does not take them)."""

    def __init__(self, store: Any, settings: CdrSettings, clock: Any, max_queue: int = DEFAULT_MAX_QUEUE,
                 boot: str | None = None) -> None:
        self.store = store
        self.clock = clock
        self.batch = settings.batch
        self.interval = settings.flush_interval
        self.max_queue = max(max_queue, settings.batch)
        self.boot = boot if boot is not None else boot_id(clock.seconds())
        self._queue: deque[tuple[Any, ...]] = deque()
        self._timer: Any = None
        self._writing: defer.Deferred | None = None
        self._waiters: list[defer.Deferred] = []  # fire with True/False when the write in flight ends
        self._stopping = False
        self._stopped = False
        self._failing = False
        # Counters for tests, the manhole and metrics.
        self.written = 0
        self.commits = 0
        self.failures = 0
        self.dropped = 0
        self.lost = 0  # rows given up at stop (logged) or arriving after it

    def __repr__(self) -> str:
        return f"<CallDetailRecords queued={len(self._queue)} written={self.written} dropped={self.dropped}>"

    @property
    def queued(self) -> int:
        """Rows waiting in memory (not counting those being written)."""
        return len(self._queue)

    @property
    def writing(self) -> bool:
        return self._writing is not None

    # -- the observer ----------------------------------------------------------------------

    def call_event(self, event: Any) -> None:
        if type(event) is not CallEnded:
            return
        row = cdr_row(self.boot, event)
        if self._stopped:
            self.lost += 1
            log.error("call record not written, the records are closed: {row}", row=row, callID=row[0])
            return
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            log.error("call record dropped, {count} are waiting for the disk: {row}",
                      count=len(self._queue), row=row, callID=row[0])
            return
        self._queue.append(row)
        if len(self._queue) >= self.batch:
            self._start()
        else:
            self._arm()

    # -- writing ---------------------------------------------------------------------------

    def flush(self) -> defer.Deferred:
        """Write until the queue is empty; fires when the rows are committed, fails
        with `CdrWriteError` when a write fails (the rows stay queued)."""
        return defer.ensureDeferred(self._flush())

    async def _flush(self) -> None:
        while True:
            if self._writing is not None:
                if not await self._wait():
                    raise CdrWriteError(f"{len(self._queue)} call record(s) not written yet")
            elif self._queue:
                self._start()
            else:
                return

    def stop(self) -> defer.Deferred:
        """Write every queued row, then close: later records are logged, not kept.
        Never fails, so that the store closes after it; rows that could not be
        written after `STOP_ATTEMPTS` tries are logged one per line."""
        self._stopping = True
        self._cancel_timer()
        return defer.ensureDeferred(self._stop())

    async def _stop(self) -> None:
        for attempt in range(1, STOP_ATTEMPTS + 1):
            try:
                await self.flush()
                break
            except CdrWriteError:
                if attempt < STOP_ATTEMPTS:
                    await task.deferLater(self.clock, self.interval, lambda: None)
        self._stopped = True
        for row in self._queue:
            self.lost += 1
            log.critical("call record not written at shutdown: {row}", row=row, callID=row[0])
        self._queue.clear()
        log.info("call records: {written} written in {commits} commits, {dropped} dropped, {lost} lost",
                 written=self.written, commits=self.commits, dropped=self.dropped, lost=self.lost)

    def settled(self) -> defer.Deferred:
        """Fires when the write in flight ends, with True if it was committed (at
        once with True when nothing is being written); starts nothing."""
        if self._writing is None:
            return defer.succeed(True)
        return self._wait()

    def _wait(self) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self._waiters.append(d)
        return d

    def _arm(self) -> None:
        """Flush the queue `flush_interval` from now, unless that is already due."""
        if self._timer is None and self._writing is None and self._queue and not self._stopping:
            self._timer = self.clock.callLater(self.interval, self._due)

    def _due(self) -> None:
        self._timer = None
        self._start()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _start(self) -> None:
        """Hand up to `batch` rows to the store, unless a write is in flight (its
        end starts the next one)."""
        if self._writing is not None or not self._queue:
            return
        self._cancel_timer()
        count = min(self.batch, len(self._queue))
        rows = [self._queue.popleft() for _ in range(count)]
        d = defer.maybeDeferred(self.store.write_cdr, rows)
        self._writing = d
        d.addBoth(self._written, rows)

    def _written(self, result: Any, rows: list[tuple[Any, ...]]) -> None:
        self._writing = None
        ok = not isinstance(result, Failure)
        if ok:
            self.commits += 1
            self.written += len(rows)
            if len(self._queue) >= self.batch:
                self._start()
            else:
                self._arm()
            if self._failing:
                self._failing = False
                log.info("call records are written again ({queued} queued)", queued=len(self._queue))
        else:
            self.failures += 1
            self._queue.extendleft(reversed(rows))
            fields = dict(count=len(rows), queued=len(self._queue), interval=self.interval,
                          error=result.getErrorMessage())
            message = "could not write {count} call record(s), {queued} queued, trying again in {interval}s"
            if self._failing:  # the traceback once, then one line per try
                log.error(message + ": {error}", **fields)
            else:
                log.failure(message, result, LogLevel.error, **fields)
            self._failing = True
            self._arm()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(ok)


def select_records(cursor: Any, number: str | None = None, since: float | None = None,
                   until: float | None = None, disposition: str | None = None,
                   limit: int = 200) -> list[dict[str, Any]]:
    """Rows of the ``cdr`` table, newest first, as dicts by column: calls from or to
    `number` (as dialled or as routed), started in ``[since, until)``, with
    `disposition` (ANSWERED, BUSY...); at most `limit`. Runs on a DB-API cursor (the
    store's thread: `search_records`)."""
    where: list[str] = []
    args: list[Any] = []
    if number:
        where.append("(caller = ? OR callee = ? OR routed_from = ? OR routed_to = ?)")
        args += [number] * 4
    if since is not None:
        where.append("start_time >= ?")
        args.append(since)
    if until is not None:
        where.append("start_time < ?")
        args.append(until)
    if disposition:
        where.append("disposition = ?")
        args.append(disposition)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    cursor.execute(f"SELECT * FROM cdr{clause} ORDER BY start_time DESC, id DESC LIMIT ?", (*args, limit))
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def search_records(store: Any, **filters: Any) -> defer.Deferred:
    """`select_records` on the SQLite store's database thread; fires with the rows."""
    return store.pool.runInteraction(select_records, **filters)
