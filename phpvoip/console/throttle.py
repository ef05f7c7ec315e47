"""Login throttling per source address.

Each address may fail `attempts` logins within `window` seconds; the next failure
shuts it out for a delay (1 s, doubling at each further failure, at most
`max_delay`), during which its attempts are answered 429 with Retry-After without
the password being checked (no PBKDF2 work for a guesser). A right password resets
the address. A wrong user name counts like a wrong password (the caller cannot tell
them apart either). An address is forgotten `window` seconds after its last failure
or the end of its shut-out, and the table holds at most `max_addresses`: when full,
expired entries are swept and then the least recently failing ones dropped, so a
flood of addresses costs bounded memory (an attacker that rotates many addresses is
slowed by `auth.MAX_CHECKS` instead).
"""

from __future__ import annotations

import math
from typing import Any

from twisted.logger import Logger

__all__ = ["FIRST_DELAY", "MAX_ADDRESSES", "LoginThrottle"]

log = Logger()

FIRST_DELAY = 1.0  # seconds of the first shut-out
MAX_ADDRESSES = 10_000


class _Address:
    """One address's recent failures."""

    __slots__ = ("failures", "first", "last", "until", "delay", "warned")

    def __init__(self, now: float) -> None:
        self.failures = 0
        self.first = now  # the window's start
        self.last = now
        self.until = 0.0  # shut out until then
        self.delay = 0.0  # the last shut-out's length
        self.warned = False


class LoginThrottle:
    """Failed logins per source address, on the injected `clock`."""

    def __init__(self, clock: Any, attempts: int = 5, window: float = 300.0, max_delay: float = 300.0,
                 max_addresses: int = MAX_ADDRESSES) -> None:
        self.clock = clock
        self.attempts = attempts
        self.window = window
        self.max_delay = max_delay
        self.max_addresses = max_addresses
        self.addresses: dict[str, _Address] = {}  # least recently failed first

    def retry_after(self, address: str) -> int:
        """Whole seconds `address` must wait before its password is checked; 0 when
        it may try now."""
        entry = self.addresses.get(address)
        if entry is None:
            return 0
        remaining = entry.until - self.clock.seconds()
        return math.ceil(remaining) if remaining > 0 else 0

    def succeeded(self, address: str) -> None:
        self.addresses.pop(address, None)

    def failed(self, address: str) -> None:
        """Count a failed login from `address`; past `attempts` in the window, shut it out."""
        now = self.clock.seconds()
        entry = self.addresses.pop(address, None)
        if entry is not None and self._expired(entry, now):
            entry = None
        if entry is None:
            self._make_room(now)
            entry = _Address(now)
        elif entry.delay == 0 and now - entry.first > self.window:
            entry.failures, entry.first = 0, now  # not shut out yet: a new window
        self.addresses[address] = entry
        entry.failures += 1
        entry.last = now
        if entry.failures >= self.attempts:
            entry.delay = min(self.max_delay, FIRST_DELAY if entry.delay == 0 else entry.delay * 2)
            entry.until = now + entry.delay
            if not entry.warned:
                entry.warned = True
                log.warn("console: {failures} failed logins from {address}: throttled (429, Retry-After)",
                         failures=entry.failures, address=address)

    def _expired(self, entry: _Address, now: float) -> bool:
        return now - max(entry.last, entry.until) > self.window

    def _make_room(self, now: float) -> None:
        if len(self.addresses) < self.max_addresses:
            return
        for address in [a for a, e in self.addresses.items() if self._expired(e, now)]:
            del self.addresses[address]
        while len(self.addresses) >= self.max_addresses:
            del self.addresses[next(iter(self.addresses))]

