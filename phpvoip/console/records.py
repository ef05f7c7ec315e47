"""Call records for the console: search and CSV.

With call records on (``cdr:``, the SQLite store) the search runs on the ``cdr``
table (`phpvoip.cdr.search_records`), after writing what is still queued so that a
call that just ended is found. Without, it filters the last ended calls the engine
keeps in memory (`Engine.records`), shown with the same columns.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from twisted.internet import defer

from phpvoip.callrecord import ANSWERED, BUSY, CANCELLED, FAILED, NO_ANSWER
from phpvoip.cdr import cdr_row, search_records
from phpvoip.events import CallEnded
from phpvoip.store.sqlite import CDR_COLUMNS, CDR_MEDIA_COLUMNS

__all__ = ["DISPOSITIONS", "RecordQuery", "csv_text", "find_records", "switch_call_id"]

DISPOSITIONS = (ANSWERED, NO_ANSWER, BUSY, CANCELLED, FAILED)
PAGE_LIMIT = 500
CSV_LIMIT = 100_000
COLUMNS = CDR_COLUMNS + CDR_MEDIA_COLUMNS
_BOOT_PREFIX = re.compile(r"\d{8}T\d{6}Z-[0-9A-Za-z]+-")


class QueryError(ValueError):
    """A search field that cannot be read; the message names it."""


@dataclass(frozen=True)
class RecordQuery:
    """The search form's fields, parsed."""

    number: str = ""
    since: float | None = None
    until: float | None = None
    disposition: str = ""

    @classmethod
    def from_args(cls, args: dict[bytes, list[bytes]]) -> RecordQuery:
        def text(name: str) -> str:
            values = args.get(name.encode()) or [b""]
            return values[0].decode("utf-8", "replace").strip()

        disposition = text("disposition").upper()
        if disposition and disposition not in DISPOSITIONS:
            raise QueryError(f"disposition: {disposition!r} is not one of {', '.join(DISPOSITIONS)}")
        since, until = _moment("since", text("since")), _moment("until", text("until"))
        return cls(text("number"), since, until, disposition)

    def filters(self) -> dict[str, Any]:
        return {"number": self.number or None, "since": self.since, "until": self.until,
                "disposition": self.disposition or None}


def _moment(name: str, text: str) -> float | None:
    """Epoch seconds from a form field: empty, a number, or an ISO date-time (the
    browser's datetime-local; UTC unless it says otherwise)."""
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError(f"{name}: {text!r} is not a date and time (YYYY-MM-DDTHH:MM, UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def switch_call_id(record_id: str) -> str:
    """The switch's call id ("call-17") of a record id ("20261203T101500Z-3fa9-call-17")."""
    return _BOOT_PREFIX.sub("", record_id, count=1)


def _memory_rows(engine: Any, query: RecordQuery, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for record in reversed(engine.records):
        row = dict(zip(COLUMNS, cdr_row("", CallEnded.of(record, record.end or record.start)), strict=True))
        row["id"] = record.id
        if query.number and query.number not in (row["caller"], row["callee"], row["routed_from"],
                                                 row["routed_to"]):
            continue
        if query.since is not None and row["start_time"] < query.since:
            continue
        if query.until is not None and row["start_time"] >= query.until:
            continue
        if query.disposition and row["disposition"] != query.disposition:
            continue
        rows.append(row)
        if len(rows) >= limit:
            break
    return rows


def find_records(service: Any, query: RecordQuery, limit: int = PAGE_LIMIT) -> defer.Deferred:
    """The records matching `query`, newest first, as dicts by CDR column."""
    cdr = getattr(service, "cdr", None)
    if cdr is None:
        return defer.succeed(_memory_rows(service.engine, query, limit))
    flushed = cdr.flush()
    flushed.addErrback(lambda _: None)  # a failing disk: search what is written
    flushed.addCallback(lambda _: search_records(service.engine.store, limit=limit, **query.filters()))
    return flushed


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Every column, a header line first, RFC 4180 line ends."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in COLUMNS])
    return out.getvalue()
