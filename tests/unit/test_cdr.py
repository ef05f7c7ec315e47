"""Call detail records: rows from CallEnded, batched writes to a real SQLite file on
the store's database thread (the real reactor), timers on a task.Clock; and the
``python -m phpvoip.store DB cdr`` export."""

from __future__ import annotations

import csv
import io
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from phpvoip.callrecord import CallRecord
from phpvoip.cdr import STOP_ATTEMPTS, CallDetailRecords, CdrWriteError, boot_id, cdr_row
from phpvoip.events import CallAnswered, CallEnded
from phpvoip.interfaces import ICallObserver
from phpvoip.opsconfig import CdrSettings
from phpvoip.sip.address import Address
from phpvoip.store.sqlite import CDR_COLUMNS, CDR_MEDIA_COLUMNS, SqliteStore

T0 = 1_764_756_000.0  # 2025-12-03 10:00:00 UTC
FAIL = "CREATE TRIGGER cdr_refused BEFORE INSERT ON cdr BEGIN SELECT RAISE(ABORT, 'disk says no'); END"


@pytest.fixture
def reactor() -> Any:
    from twisted.internet import reactor

    return reactor


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(T0)
    return clock


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "var" / "phpvoip.db"


@pytest_twisted.async_yield_fixture
async def store(reactor: Any, db_path: Path):
    store = SqliteStore(db_path, reactor)
    yield store
    await store.close()


@pytest.fixture
def logged():
    """The log events emitted during the test."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def records(store: SqliteStore, clock: Clock, batch: int = 200, interval: float = 1.0,
            **kwargs: Any) -> CallDetailRecords:
    return CallDetailRecords(store, CdrSettings(True, batch, interval), clock, boot="B", **kwargs)


def ended(number: int, start: float = T0, answered: bool = True, talk: float = 30.0) -> CallEnded:
    """A call from 1001 to 2000+number: answered 2 s after `start` and hung up by
    the caller after `talk` seconds, or refused 404 by the switch at once."""
    record = CallRecord(f"call-{number}", f"sip-{number}@host", "1001", f"{2000 + number}", start,
                        Address("udp", "127.0.0.1", 5070))
    record.inbound_module = "phones"
    if answered:
        record.routed_from, record.routed_to = "1001", f"+49{2000 + number}"
        record.outbound_module = "trunk"
        record.ring, record.answer = start + 1.0, start + 2.0
        record.finish(start + 2.0 + talk, 200, "Normal call clearing", "caller")
    else:
        record.finish(start + 0.004, 404, "Not Found", "switch")
    return CallEnded.of(record, record.end)  # type: ignore[arg-type]


def rows_in(path: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM cdr ORDER BY start_time, id")]


def execute(path: Path, statement: str) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute(statement)
        db.commit()
    finally:
        db.close()


# -- rows -------------------------------------------------------------------------------------


def test_row_ids_carry_a_boot_id() -> None:
    """Ids are the boot id (UTC start time, random suffix) and the call id, so two
    runs starting at call-1 do not collide."""
    first, second = boot_id(T0), boot_id(T0)
    assert first.startswith("20251203T100000Z-") and len(first) == len("20251203T100000Z-") + 4
    assert first != second or boot_id(T0) != first  # random suffix (a 1/65536 tie is retried)
    assert cdr_row("B", ended(7))[0] == "B-call-7"
    assert len(cdr_row("B", ended(7))) == len(CDR_COLUMNS) + len(CDR_MEDIA_COLUMNS)
    made = CallDetailRecords(None, CdrSettings(True), Clock())  # as the service makes it
    assert made.boot.startswith("19700101T000000Z-") and (made.batch, made.interval) == (200, 1.0)


@pytest_twisted.ensureDeferred
async def test_answered_and_refused_rows_hold_the_record(store: SqliteStore, clock: Clock,
                                                         db_path: Path) -> None:
    """An answered call's row has its times, billsec (answer to end) and duration
    (INVITE to end); a refused one has NULL where it never got (route, answer)."""
    cdr = records(store, clock)
    assert verifyObject(ICallObserver, cdr)
    answered = ended(1, talk=61.5)
    answered.call.transfers.append("3001")
    cdr.call_event(CallAnswered(answered.call, T0 + 2.0, 2.0))  # other events are not rows
    cdr.call_event(answered)
    cdr.call_event(ended(2, start=T0 + 5, answered=False))
    await cdr.flush()
    first, second = rows_in(db_path)
    assert first == {
        "id": "B-call-1", "call_id": "sip-1@host", "caller": "1001", "callee": "2001",
        "routed_from": "1001", "routed_to": "+492001", "inbound_module": "phones", "outbound_module": "trunk",
        "source": "udp:127.0.0.1:5070", "start_time": T0, "ring_time": T0 + 1, "answer_time": T0 + 2,
        "end_time": T0 + 63.5, "duration": 63.5, "billsec": 61.5, "disposition": "ANSWERED", "status": 200,
        "cause": "Q.850;cause=16", "q850": 16, "reason": "Normal call clearing", "hangup_by": "caller",
        "transfers": "3001", **dict.fromkeys(CDR_MEDIA_COLUMNS),
    }
    how = ("disposition", "status", "cause", "q850", "hangup_by")
    assert [second[k] for k in how] == ["FAILED", 404, "SIP;cause=404", 1, "switch"]
    assert (second["routed_to"], second["outbound_module"], second["answer_time"], second["billsec"]) == (
        None, None, None, 0.0)
    assert second["duration"] == 0.004 and second["end_time"] == T0 + 5.004


# -- batching and timing ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_full_batch_is_written_at_once_in_one_commit(store: SqliteStore, clock: Clock,
                                                             db_path: Path) -> None:
    """12 records with batch 5: two commits of 5 without waiting for the clock, the
    last 2 when the flush interval has passed."""
    cdr = records(store, clock, batch=5, interval=1.0)
    for n in range(12):
        cdr.call_event(ended(n, start=T0 + n))
    assert (cdr.writing, cdr.queued, cdr.commits) == (True, 7, 0)  # 5 in flight
    assert await cdr.settled()
    assert (cdr.writing, cdr.queued, cdr.commits) == (True, 2, 1)  # the next 5 went at once
    assert await cdr.settled()
    assert (cdr.writing, cdr.queued, cdr.commits, len(rows_in(db_path))) == (False, 2, 2, 10)
    assert [c.getTime() for c in clock.getDelayedCalls()] == [T0 + 1.0]
    clock.advance(1.0)
    assert cdr.writing
    assert await cdr.settled()
    assert (cdr.commits, cdr.written, cdr.queued) == (3, 12, 0)
    assert [r["id"] for r in rows_in(db_path)] == [f"B-call-{n}" for n in range(12)]
    assert store.batches == 0  # bindings batches are counted apart


@pytest_twisted.ensureDeferred
async def test_a_partial_batch_waits_for_the_flush_interval(store: SqliteStore, clock: Clock,
                                                            db_path: Path) -> None:
    """Three records wait flush_interval after the first one, then go in one commit;
    a quiet switch has no timer armed."""
    cdr = records(store, clock, interval=2.5)
    cdr.call_event(ended(1))
    clock.advance(1.0)
    cdr.call_event(ended(2))
    cdr.call_event(ended(3))
    clock.advance(1.49)
    assert not cdr.writing and cdr.queued == 3
    clock.advance(0.01)
    assert cdr.writing and cdr.queued == 0
    assert await cdr.settled()
    assert (cdr.commits, len(rows_in(db_path))) == (1, 3)
    assert clock.getDelayedCalls() == []


@pytest_twisted.ensureDeferred
async def test_stop_writes_what_is_queued(store: SqliteStore, clock: Clock, db_path: Path,
                                          logged: list[dict]) -> None:
    """stop() writes the queue without waiting for the interval; a record that comes
    after it is logged as not written."""
    cdr = records(store, clock)
    for n in range(3):
        cdr.call_event(ended(n))
    await cdr.stop()
    assert len(rows_in(db_path)) == 3 and clock.getDelayedCalls() == []
    cdr.call_event(ended(9))
    assert (cdr.queued, cdr.lost, len(rows_in(db_path))) == (0, 1, 3)
    late = [e for e in logged if e.get("callID") == "B-call-9"]
    assert late and "records are closed" in late[0]["log_format"]


# -- failures ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_failed_write_is_logged_and_retried(store: SqliteStore, clock: Clock, db_path: Path,
                                                    logged: list[dict]) -> None:
    """A commit SQLite refuses is logged; its rows stay first in the queue and go at
    the next flush, in their order, with those queued since."""
    cdr = records(store, clock)
    await store.load_users()  # the pool's connection is open (and made the table)
    execute(db_path, FAIL)
    cdr.call_event(ended(1))
    cdr.call_event(ended(2))
    clock.advance(1.0)
    assert not await cdr.settled()
    assert (cdr.failures, cdr.queued, cdr.commits) == (1, 2, 0)
    failure = [e for e in logged if "could not write" in e.get("log_format", "")]
    assert failure and "disk says no" in str(failure[0]["log_failure"].value)
    with pytest.raises(CdrWriteError):  # flush() says so too
        await cdr.flush()
    cdr.call_event(ended(3))
    execute(db_path, "DROP TRIGGER cdr_refused")
    clock.advance(1.0)
    assert await cdr.settled()
    assert [r["id"] for r in rows_in(db_path)] == ["B-call-1", "B-call-2", "B-call-3"]
    assert (cdr.written, cdr.failures) == (3, 2)


@pytest_twisted.ensureDeferred
async def test_the_queue_is_bounded_while_the_disk_refuses(store: SqliteStore, clock: Clock,
                                                           db_path: Path, logged: list[dict]) -> None:
    """With writes failing, records past `max_queue` are dropped and each one is
    logged with its fields; those kept are written once the disk is back."""
    cdr = records(store, clock, batch=2, max_queue=2)
    await store.load_users()
    execute(db_path, FAIL)
    cdr.call_event(ended(1))
    cdr.call_event(ended(2))  # a full batch: in flight
    cdr.call_event(ended(3))
    assert not await cdr.settled()
    cdr.call_event(ended(4))  # 3 queued again: over the bound
    assert (cdr.queued, cdr.dropped) == (3, 1)
    dropped = [e for e in logged if e.get("callID") == "B-call-4"]
    assert dropped and dropped[0]["row"][3] == "2004" and dropped[0]["log_level"].name == "error"
    execute(db_path, "DROP TRIGGER cdr_refused")
    await cdr.flush()
    assert [r["id"] for r in rows_in(db_path)] == ["B-call-1", "B-call-2", "B-call-3"]


@pytest_twisted.ensureDeferred
async def test_stop_gives_up_after_its_tries_and_logs_every_row(store: SqliteStore, clock: Clock,
                                                               db_path: Path, logged: list[dict]) -> None:
    """When the disk never takes the rows, stop() tries STOP_ATTEMPTS times one
    interval apart, logs each unwritten row at critical level and still fires."""
    cdr = records(store, clock, interval=0.5)
    await store.load_users()
    execute(db_path, FAIL)
    cdr.call_event(ended(1))
    cdr.call_event(ended(2))
    stopping = cdr.stop()
    for attempt in range(STOP_ATTEMPTS):
        assert not stopping.called
        assert not await cdr.settled()
        if attempt < STOP_ATTEMPTS - 1:
            clock.advance(0.5)
    await stopping
    assert (cdr.failures, cdr.lost, cdr.queued) == (STOP_ATTEMPTS, 2, 0)
    critical = [e.get("callID") for e in logged if e["log_level"].name == "critical"]
    assert critical == ["B-call-1", "B-call-2"]


@pytest_twisted.ensureDeferred
async def test_a_database_from_before_call_records_gets_the_table(reactor: Any, clock: Clock,
                                                                  db_path: Path) -> None:
    """A file an older version made (bindings only) is given the cdr table and its
    indexes at the next start, and keeps its bindings."""
    db_path.parent.mkdir(parents=True)
    execute(db_path, "CREATE TABLE bindings (aor TEXT NOT NULL, contact_key TEXT NOT NULL,"
                     " contact TEXT NOT NULL, expires_at REAL NOT NULL, call_id TEXT NOT NULL,"
                     " cseq INTEGER NOT NULL, q REAL,"
                     " source TEXT, registered_at REAL NOT NULL, user_agent TEXT,"
                     " PRIMARY KEY (aor, contact_key))")
    execute(db_path, "INSERT INTO bindings VALUES ('1001', 'k', 'sip:1001@h', 9e9, 'c', 1, NULL, NULL, 0,"
                     " NULL)")
    store = SqliteStore(db_path, reactor)
    try:
        cdr = records(store, clock)
        cdr.call_event(ended(1))
        await cdr.stop()
    finally:
        await store.close()
    assert [r["id"] for r in rows_in(db_path)] == ["B-call-1"]
    with sqlite3.connect(db_path) as db:
        indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert db.execute("SELECT count(*) FROM bindings").fetchone() == (1,)
    assert {"cdr_start", "cdr_caller", "cdr_callee", "cdr_call_id"} <= indexes


# -- export -----------------------------------------------------------------------------------


async def _filled(store: SqliteStore, clock: Clock) -> None:
    cdr = records(store, clock)
    cdr.call_event(ended(1, start=T0 - 86400, talk=12.25))  # the day before
    cdr.call_event(ended(2, start=T0 + 3600, answered=False))
    cdr.call_event(ended(3, start=T0 + 7200, talk=5.0))
    await cdr.stop()


@pytest_twisted.ensureDeferred
async def test_export_prints_an_aligned_table_in_utc(store: SqliteStore, clock: Clock, db_path: Path,
                                                     capsys: Any) -> None:
    """`cdr` prints a header and one aligned line per call, oldest first, with UTC
    start times and durations to a tenth of a second."""
    from phpvoip.store.__main__ import main

    await _filled(store, clock)
    assert main([str(db_path), "cdr"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    header = lines[0]
    # Aligned: each column starts where its heading does, on every line.
    headings = ("start (UTC)", "caller", "callee", "routed to", "in", "out", "disposition", "status",
                "duration", "billsec", "hung up by", "cause", "id")
    starts = [0]
    for heading in headings[1:]:
        starts.append(header.index("  " + heading, starts[-1]) + 2)
    cells = [[line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)] for line in lines]
    assert cells[0] == list(headings)
    assert cells[1] == ["2025-12-02 10:00:00", "1001", "2001", "+492001", "phones", "trunk", "ANSWERED",
                        "200", "14.2", "12.2", "caller", "Q.850;cause=16", "B-call-1"]
    assert cells[2] == ["2025-12-03 11:00:00", "1001", "2002", "", "phones", "", "FAILED", "404", "0.0",
                        "0.0", "switch", "SIP;cause=404", "B-call-2"]


@pytest_twisted.ensureDeferred
async def test_export_csv_and_since(store: SqliteStore, clock: Clock, db_path: Path, capsys: Any) -> None:
    """--csv gives a header of every column and RFC 4180 rows (CRLF, NULL empty);
    --since takes epoch seconds or an ISO date or date-time in UTC."""
    from phpvoip.store.__main__ import main

    await _filled(store, clock)
    assert main([str(db_path), "cdr", "--csv"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\r\n") and out.count("\r\n") == 4
    header, *rows = list(csv.reader(io.StringIO(out, newline="")))
    assert header == [*CDR_COLUMNS, *CDR_MEDIA_COLUMNS]
    assert [r[0] for r in rows] == ["B-call-1", "B-call-2", "B-call-3"]
    assert rows[1][header.index("routed_to")] == "" and rows[0][header.index("billsec")] == "12.25"
    for since, expected in ((str(T0), ["B-call-2", "B-call-3"]), ("2025-12-03", ["B-call-2", "B-call-3"]),
                            ("2025-12-03T11:00:01", ["B-call-3"]), ("2025-12-03T12:00", ["B-call-3"]),
                            ("2025-12-03T13:00+02:00", ["B-call-2", "B-call-3"])):
        assert main([str(db_path), "cdr", "--csv", "--since", since]) == 0
        assert [r[0] for r in list(csv.reader(io.StringIO(capsys.readouterr().out)))[1:]] == expected, since


def test_export_refuses_a_bad_time_and_a_missing_file(tmp_path: Path, capsys: Any) -> None:
    """A --since that is no time is a usage error; a missing database is said so
    (and not created)."""
    from phpvoip.store.__main__ import main

    with pytest.raises(SystemExit) as usage:
        main([str(tmp_path / "x.db"), "cdr", "--since", "yesterday"])
    assert usage.value.code == 2 and "neither epoch seconds nor a date" in capsys.readouterr().err
    assert main([str(tmp_path / "x.db"), "cdr"]) == 1
    assert not (tmp_path / "x.db").exists()
