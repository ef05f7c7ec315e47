"""Look after the users and bindings of a SQLite store from the shell.

    python -m phpvoip.store var/phpvoip.db users add 1001 --realm 127.0.0.1
    python -m phpvoip.store var/phpvoip.db users list
    python -m phpvoip.store var/phpvoip.db users remove 1001
    python -m phpvoip.store var/phpvoip.db bindings
    python -m phpvoip.store var/phpvoip.db cdr [--since T] [--csv]

``users add`` asks for the password (or reads one line from stdin with
``--password-stdin``) and stores only its HA1 hashes for the realm, which must be
the registrar's `realm` (by default the switch's domain). A running switch reads
users at start (``users_from_store: true``); bindings are written by the switch.

``cdr`` prints the call detail records (oldest first) that started at or after
``--since T``: T is epoch seconds or an ISO 8601 date or date-time (``2026-12-03``,
``2026-12-03T10:15``, ``2026-12-03T10:15:30``), taken as UTC unless it carries an
offset (``+02:00``). The default output is an aligned table of the main columns with
times in UTC; ``--csv`` prints every column of the ``cdr`` table as RFC 4180 CSV
with a header line, times as epoch seconds and NULL as an empty field.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from phpvoip.sip.digest import ha1
from phpvoip.store.sqlite import prepare


def _connect(path: str) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    prepare(connection)
    return connection


def parse_since(text: str) -> float:
    """Epoch seconds from `text`: a number, or an ISO date or date-time (UTC unless
    it says otherwise)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither epoch seconds nor a date (YYYY-MM-DD[THH:MM[:SS]], UTC)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


# The table's columns: (heading, column, how to show it).
def _utc(value: float | None) -> str:
    return "" if value is None else datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


TABLE = (
    ("start (UTC)", "start_time", _utc),
    ("caller", "caller", _text),
    ("callee", "callee", _text),
    ("routed to", "routed_to", _text),
    ("in", "inbound_module", _text),
    ("out", "outbound_module", _text),
    ("disposition", "disposition", _text),
    ("status", "status", _text),
    ("duration", "duration", _seconds),
    ("billsec", "billsec", _seconds),
    ("hung up by", "hangup_by", _text),
    ("cause", "cause", _text),
    ("id", "id", _text),
)


def export_cdr(db: sqlite3.Connection, since: float | None, as_csv: bool, out: TextIO) -> int:
    """Print the records that started at or after `since` (all when None)."""
    where, args = ("WHERE start_time >= ?", (since,)) if since is not None else ("", ())
    cursor = db.execute(f"SELECT * FROM cdr {where} ORDER BY start_time, id", args)
    names = [d[0] for d in cursor.description]
    if as_csv:
        writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 line ends
        writer.writerow(names)
        writer.writerows(cursor)
        return 0
    index = {name: i for i, name in enumerate(names)}
    lines = [[heading for heading, _, _ in TABLE]]
    lines += [[show(row[index[column]]) for _, column, show in TABLE] for row in cursor]
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE))]
    for line in lines:
        cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        out.write("  ".join(cells).rstrip() + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phpvoip.store", description=__doc__.split("\n")[0])
    parser.add_argument("database", help="the SQLite file (storage: sqlite:PATH)")
    commands = parser.add_subparsers(dest="what", required=True)
    users = commands.add_parser("users", help="list, add or remove users")
    actions = users.add_subparsers(dest="action", required=True)
    actions.add_parser("list")
    add = actions.add_parser("add")
    add.add_argument("username")
    add.add_argument("--realm", required=True, help="the registrar's realm (by default the switch's domain)")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    remove = actions.add_parser("remove")
    remove.add_argument("username")
    commands.add_parser("bindings", help="list the live bindings")
    cdr = commands.add_parser("cdr", help="export the call detail records")
    cdr.add_argument("--since", type=parse_since, metavar="T",
                     help="only calls started at or after T: epoch seconds or YYYY-MM-DD[THH:MM[:SS]] (UTC)")
    cdr.add_argument("--csv", action="store_true", help="every column, as CSV with a header line")
    args = parser.parse_args(argv)

    if args.what == "cdr":
        if not Path(args.database).is_file():
            print(f"no database at {args.database}", file=sys.stderr)
            return 1
        db = _connect(args.database)
        try:
            return export_cdr(db, args.since, args.csv, sys.stdout)
        finally:
            db.close()

    with _connect(args.database) as db:
        if args.what == "bindings":
            rows = db.execute(
                "SELECT aor, contact, expires_at, source FROM bindings WHERE expires_at > ? ORDER BY aor",
                (time.time(),),
            ).fetchall()
            for aor, contact, expires_at, source in rows:
                print(f"{aor}\t{contact}\t{int(expires_at - time.time())}s\t{source or ''}")
            return 0
        if args.action == "list":
            for (username,) in db.execute("SELECT username FROM users ORDER BY username"):
                print(username)
            return 0
        if args.action == "remove":
            gone = db.execute("DELETE FROM users WHERE username = ?", (args.username,)).rowcount
            if not gone:
                print(f"no user {args.username!r}", file=sys.stderr)
                return 1
            return 0
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = getpass.getpass(f"password for {args.username}: ")
        if not password:
            print("an empty password is not allowed", file=sys.stderr)
            return 1
        db.execute(
            "INSERT OR REPLACE INTO users (username, ha1_md5, ha1_sha256) VALUES (?, ?, ?)",
            (
                args.username,
                ha1(args.username, args.realm, password, "MD5"),
                ha1(args.username, args.realm, password, "SHA-256"),
            ),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
