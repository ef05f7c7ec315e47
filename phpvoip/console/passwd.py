"""``python -m phpvoip.console.passwd``: print a console `password_hash`.

The password is read from a prompt without echo on a terminal, else from the first
line of stdin (``echo secret | python -m phpvoip.console.passwd``), so that it never
appears in the process list or the shell history.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from phpvoip.console.passwords import DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS, hash_password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phpvoip.console.passwd",
                                     description="Print a password_hash for the console's users: section.")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help=f"PBKDF2 rounds (default {DEFAULT_ITERATIONS})")
    args = parser.parse_args(argv)
    if not MIN_ITERATIONS <= args.iterations <= MAX_ITERATIONS:
        parser.error(f"--iterations must be from {MIN_ITERATIONS} to {MAX_ITERATIONS}")
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("an empty password is not accepted", file=sys.stderr)
        return 1
    print(hash_password(password, args.iterations))
    return 0


if __name__ == "__main__":
    sys.exit(main())
