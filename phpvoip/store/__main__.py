"""Look after the users and bindings of a SQLite store from the shell.

    python -m phpvoip.store var/phpvoip.db users add 1001 --realm 127.0.0.1
    python -m phpvoip.store var/phpvoip.db users list
    python -m phpvoip.store var/phpvoip.db users remove 1001
    python -m phpvoip.store var/phpvoip.db bindings

``users add`` asks for the password (or reads one line from stdin with
``--password-stdin``) and stores only its HA1 hashes for the realm, which must be
the registrar's `realm` (by default the switch's domain). A running switch reads
users at start (``users_from_store: true``); bindings are written by the switch.
"""

from __future__ import annotations

import argparse
import getpass
import sqlite3
import sys
import time
from pathlib import Path

from phpvoip.sip.digest import ha1
from phpvoip.store.sqlite import prepare


def _connect(path: str) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path)
    prepare(connection)
    return connection


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
    args = parser.parse_args(argv)

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
