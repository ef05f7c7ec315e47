"""Slowing down password guessing: failed authentications counted per source.

A source (IP address) that fails `limit` times within `window` seconds is blocked
for `block` seconds: its requests are refused with 403 before any digest work is
done. Each source has its own count, so one guesser does not lock out the phones
elsewhere (phones behind the same NAT address do share it: keep `limit` well
above what a misconfigured phone produces in a window). A correct answer clears
the count. The table is bounded: beyond `max_sources` the least recently failing
source is forgotten.

With the switch's flood protection (`phpvoip.limits.Limits`, passed as `bans`) a
block is also a ban at the switch: the source's packets are dropped before they are
parsed for as long as the block lasts. A success refunds the challenge round trip
to the per-source request count. Every failure is logged in a stable line naming the
source first, for fail2ban: ``phpvoip: auth failure from 192.0.2.7 user '1001'``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.logger import Logger

__all__ = ["AuthThrottle", "ThrottleSettings"]

log = Logger()


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    limit: int = 10  # failures in `window` that trigger a block; 0 turns it off
    window: float = 60.0
    block: float = 300.0


class _Source:
    __slots__ = ("failures", "window_start", "blocked_until")

    def __init__(self, now: float) -> None:
        self.failures = 0
        self.window_start = now
        self.blocked_until = 0.0


class AuthThrottle:
    """Counts failures per source host on `clock` and says who is blocked."""

    def __init__(
        self,
        clock: Any,
        settings: ThrottleSettings = ThrottleSettings(),
        max_sources: int = 100_000,
        module: str = "registrar",
        bans: Any = None,
    ) -> None:
        self.clock = clock
        self.bans = bans  # phpvoip.limits.Limits, or None
        self.settings = settings
        self.max_sources = max_sources
        self.module = module
        self._sources: dict[str, _Source] = {}  # insertion order = least recent first
        self.blocks = 0  # how many blocks were imposed (for metrics and tests)

    def __len__(self) -> int:
        return len(self._sources)

    def blocked(self, host: str) -> bool:
        """Whether requests from `host` are refused right now."""
        entry = self._sources.get(host)
        if entry is None or not entry.blocked_until:
            return False
        if self.clock.seconds() < entry.blocked_until:
            return True
        del self._sources[host]  # the block is over: start counting afresh
        return False

    def failed(self, host: str, user: str | None = None) -> bool:
        """Count a failed authentication from `host` (as `user`); true when it
        starts a block."""
        log.info("phpvoip: auth failure from {source} user {user}", source=host, user=_printable(user))
        settings = self.settings
        if settings.limit <= 0:
            return False
        now = self.clock.seconds()
        sources = self._sources
        entry = sources.pop(host, None)
        if entry is None or now - entry.window_start > settings.window:
            entry = _Source(now)
        sources[host] = entry  # re-insert: most recent last
        while len(sources) > self.max_sources:
            del sources[next(iter(sources))]
        entry.failures += 1
        if entry.failures >= settings.limit and not entry.blocked_until:
            entry.blocked_until = now + settings.block
            self.blocks += 1
            log.warn(
                "{module}: {failures} failed authentications from {source} within {window}s;"
                " refusing it for {block}s",
                module=self.module,
                failures=entry.failures,
                source=host,
                window=settings.window,
                block=settings.block,
            )
            if self.bans is not None and not self.bans.exempt(host):
                reason = f"{entry.failures} failed authentications in {settings.window:g}s"
                self.bans.ban(host, settings.block, reason)
            return True
        return False

    def succeeded(self, host: str) -> None:
        """A right answer from `host` clears its count (not a running block), and
        takes its challenge round trip back from the switch's request count."""
        if self.bans is not None:
            self.bans.refund(host)
        entry = self._sources.get(host)
        if entry is not None and not entry.blocked_until:
            del self._sources[host]


def _printable(user: str | None) -> str:
    """A user name as the log shows it: quoted, printable, at most 64 characters
    (it is the peer's choice, so it must not pass for anything else in the line)."""
    if user is None:
        return "-"
    return repr("".join(c if c.isprintable() else "?" for c in user[:64]))
