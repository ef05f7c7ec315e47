"""Flood protection: a per-source request rate, a ban list, and caps (like Kamailio's
pike with an ipban table).

``limits:`` in the config (every key optional; the defaults are below)::

    limits:
      per_source: {requests: 30, window: 2}  # requests a source may send in `window` s; 0: no limit
      ban: 300                     # seconds a source over the limit (or guessing passwords) is banned
      exempt: []                   # addresses or networks never banned (besides the peers)
      exempt_peers: true           # trunk `allow` lists and line `server`s are exempt
      max_calls: 0                 # calls up at once; a new INVITE beyond gets 503; 0: no cap
      per_source_transactions: 50  # requests of one source awaiting our final answer; 0: no cap
      per_source_tcp: 20           # TCP connections one source may hold open; 0: no cap
      retry_after: 5               # the Retry-After (s) of a 503 for a cap

How it is cheap. The transport asks `Limits.admit(host, data)` for every datagram and
stream frame *before* parsing: a banned source costs one dict lookup. Responses are
not counted (only answers to what we sent); requests are counted in `BUCKETS` buckets
per window plus a running total per source, so counting is two dict updates and the
window slides in steps of ``window / BUCKETS`` (a source is judged on the last 3/4 to
4/4 of a window). One reactor timer, ticking once a bucket, retires the oldest bucket
and ends the bans that are due: nothing reads the clock per packet.

A phone's digest round trip (a REGISTER, its 401, the REGISTER with credentials) is
not held against it: a successful authentication takes its two requests back
(`refund`), so a phone registering or calling at any normal rate never nears the
limit, while a guesser's failed answers all count. Failed authentications themselves
are counted by the registrar's `AuthThrottle`, which bans here once its limit is
reached.

Exempt sources are only looked up when a source goes over a limit (the slow path):
the trunk and line peers are read from the engine's modules then, so a reload that
changes them counts at once.

Log lines for fail2ban (stable; the source comes first, before anything the peer
chose)::

    phpvoip: ban 127.0.0.3 for 300s: 61 requests in 2s
    phpvoip: ban 192.0.2.7 for 300s: 10 failed authentications in 60s
    phpvoip: auth failure from 192.0.2.7 user '1001'
"""

from __future__ import annotations

import ipaddress
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet import task
from twisted.logger import Logger

from phpvoip.settings import Section

__all__ = ["BUCKETS", "Ban", "LimitSettings", "Limits", "install_limits", "limit_settings", "peer_networks"]

log = Logger()

BUCKETS = 4  # buckets per window: the window slides in quarter steps
EXEMPT_CACHE = 10_000  # hosts whose exemption is remembered (cleared beyond)
SWEEP_TICKS = 40  # ticks between sweeps of the transaction table (20 s for a 2 s window)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class LimitSettings:
    """`limits:` (see the module docstring for what each key does)."""

    requests: int = 30
    window: float = 2.0
    ban: float = 300.0
    exempt: tuple[Network, ...] = ()
    exempt_peers: bool = True
    max_calls: int = 0
    per_source_transactions: int = 50
    per_source_tcp: int = 20
    retry_after: int = 5


def limit_settings(top: Section) -> LimitSettings:
    """Read ``limits:`` (absent: the defaults, which are on)."""
    section = top.section("limits", {})
    rate = section.section("per_source", {})
    requests = rate.integer("requests", 30, minimum=0)
    window = float(rate.number("window", 2.0, minimum=0.1, maximum=3600))
    rate.check_unknown()
    exempt = []
    for i, text in enumerate(section.strings("exempt", [])):
        try:
            exempt.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise section.error(f"exempt[{i}]", f"{text!r} is not an address or network") from None
    settings = LimitSettings(
        requests=requests,
        window=window,
        ban=float(section.number("ban", 300.0, minimum=1, maximum=30 * 86400)),
        exempt=tuple(exempt),
        exempt_peers=section.boolean("exempt_peers", True),
        max_calls=section.integer("max_calls", 0, minimum=0),
        per_source_transactions=section.integer("per_source_transactions", 50, minimum=0),
        per_source_tcp=section.integer("per_source_tcp", 20, minimum=0),
        retry_after=section.integer("retry_after", 5, minimum=1, maximum=86400),
    )
    section.check_unknown()
    return settings


def peer_networks(modules: Iterable[Any]) -> list[Network]:
    """The trunk and line peers among `modules`: each trunk's `allow` networks and
    each outside line's `server` address."""
    networks: list[Network] = []
    for module in modules:
        settings = getattr(module, "settings", None)
        networks.extend(getattr(settings, "allow", ()) or ())
        server = getattr(settings, "server", None)
        host = getattr(server, "host", None)
        if isinstance(host, str):
            try:
                networks.append(ipaddress.ip_network(host))
            except ValueError:
                pass
    return networks


class Ban:
    """One banned source: until when (on the limits' clock), since when, and why."""

    __slots__ = ("host", "until", "since", "reason")

    def __init__(self, host: str, until: float, since: float, reason: str) -> None:
        self.host = host
        self.until = until
        self.since = since
        self.reason = reason

    def __repr__(self) -> str:
        return f"<Ban {self.host} until {self.until:g}: {self.reason}>"


class Limits(Service):
    """The switch's flood protection: what the transport and the engine ask.

    `clock` provides IReactorTime (tests pass `task.Clock`); `modules` returns the
    engine's modules, read for the exempt peers when a source goes over a limit.
    The bucket timer runs while the service runs (`startService`).
    """

    def __init__(self, settings: LimitSettings, clock: Any,
                 modules: Callable[[], Iterable[Any]] = tuple) -> None:
        self.settings = settings
        self.clock = clock
        self.modules = modules
        self.banned: dict[str, Ban] = {}  # host -> its ban: the one lookup per packet
        self._totals: dict[str, int] = {}  # host -> requests in the window's buckets
        self._buckets: deque[dict[str, int]] = deque({} for _ in range(BUCKETS))
        self._current: dict[str, int] = self._buckets[-1]
        self._pending: dict[str, list[Any]] = {}  # host -> its server transactions, maybe done
        self._tcp: dict[str, int] = {}  # host -> inbound connections open
        self._exempt: dict[str, bool] = {}  # host -> exempt? (the slow path's cache)
        self._exempt_modules: Any = None  # the module list the cache was made from
        self._next_expiry = float("inf")
        self._ticks = 0
        self._timer: task.LoopingCall | None = None
        # Plain integers, for metrics and stats: why requests were not served.
        self.dropped = {"banned": 0, "rate": 0, "transactions": 0, "calls": 0, "tcp": 0}
        self.bans_total = 0

    # -- life cycle ----------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._start_timer()

    def stopService(self) -> Any:
        super().stopService()
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        self._timer = None
        return None

    def _start_timer(self) -> None:
        timer = task.LoopingCall.withCount(self.tick)
        timer.clock = self.clock
        timer.start(self.settings.window / BUCKETS, now=False)
        self._timer = timer

    def reconfigure(self, settings: LimitSettings) -> None:
        """Take new settings (a reload): counts start afresh, bans stay."""
        window_changed = settings.window != self.settings.window
        self.settings = settings
        self._exempt.clear()
        self._totals.clear()
        for bucket in self._buckets:
            bucket.clear()
        if window_changed and self._timer is not None and self._timer.running:
            self._timer.stop()
            self._start_timer()

    # -- the hot path: the transport, before parsing -------------------------------------

    def admit(self, host: str, data: bytes) -> bool:
        """Whether to read what `host` sent (`data`, not yet parsed): false for a
        banned source, and for the request that takes one over the rate (which
        bans it)."""
        if host in self.banned:
            self.dropped["banned"] += 1
            return False
        limit = self.settings.requests
        if not limit or data.startswith(b"SIP/2.0"):
            return True  # no rate limit, or a response (not counted)
        totals = self._totals
        count = totals.get(host, 0) + 1
        totals[host] = count
        current = self._current
        current[host] = current.get(host, 0) + 1
        if count > limit:
            return self._over_rate(host, count)
        return True

    def _over_rate(self, host: str, count: int) -> bool:
        if self.exempt(host):
            return True
        self.dropped["rate"] += 1
        self.ban(host, reason=f"{count} requests in {self.settings.window:g}s")
        return False

    def refund(self, host: str, requests: int = 2) -> None:
        """Take back `requests` of `host`'s count: its authentication succeeded, so
        the challenge round trip that led to it is not held against it."""
        left = requests
        for bucket in reversed(self._buckets):  # newest first; no bucket goes below zero
            have = bucket.get(host, 0)
            if have > 0:
                take = min(have, left)
                bucket[host] = have - take
                left -= take
                if not left:
                    break
        taken = requests - left
        if taken:
            count = self._totals.get(host, 0) - taken
            if count > 0:
                self._totals[host] = count
            else:
                self._totals.pop(host, None)

    def tick(self, count: int = 1) -> None:
        """Once a bucket: retire the oldest bucket, end the bans that are due, and
        now and then forget finished transactions. `count` is how many bucket
        times have passed (more than one when the reactor was busy)."""
        buckets = self._buckets
        totals = self._totals
        for _ in range(min(count, BUCKETS)):
            oldest = buckets.popleft()
            for host, requests in oldest.items():
                left = totals.get(host, 0) - requests
                if left > 0:
                    totals[host] = left
                else:
                    totals.pop(host, None)
            oldest.clear()
            buckets.append(oldest)
        self._current = buckets[-1]
        if self.clock.seconds() >= self._next_expiry:
            self._expire()
        before, self._ticks = self._ticks, self._ticks + count
        if before // SWEEP_TICKS != self._ticks // SWEEP_TICKS:
            self._sweep()

    # -- bans -----------------------------------------------------------------------------

    def ban(self, host: str, seconds: float | None = None, reason: str = "by hand") -> Ban:
        """Ban `host` for `seconds` (default: the configured `ban`); a longer ban
        already in force is kept. Logs the fail2ban line."""
        seconds = float(self.settings.ban if seconds is None else seconds)
        now = self.clock.seconds()
        until = now + seconds
        existing = self.banned.get(host)
        if existing is not None and existing.until >= until:
            return existing
        entry = Ban(host, until, now, reason)
        self.banned[host] = entry
        self._next_expiry = min(self._next_expiry, until)
        self.bans_total += 1
        log.warn("phpvoip: ban {source} for {seconds:g}s: {reason}", source=host, seconds=seconds,
                 reason=reason)
        # Its count starts afresh when the ban ends.
        self._totals.pop(host, None)
        for bucket in self._buckets:
            bucket.pop(host, None)
        return entry

    def unban(self, host: str) -> bool:
        """Lift `host`'s ban; false when it was not banned."""
        entry = self.banned.pop(host, None)
        if entry is None:
            return False
        log.info("phpvoip: unban {source}", source=host)
        return True

    def bans(self) -> list[Ban]:
        """The bans in force, soonest to end first."""
        now = self.clock.seconds()
        return sorted((b for b in self.banned.values() if b.until > now), key=lambda b: (b.until, b.host))

    def _expire(self) -> None:
        now = self.clock.seconds()
        soonest = float("inf")
        for host, entry in list(self.banned.items()):
            if entry.until <= now:
                del self.banned[host]
                log.info("phpvoip: ban of {source} ended", source=host)
            else:
                soonest = min(soonest, entry.until)
        self._next_expiry = soonest

    # -- exemption (the slow path) -------------------------------------------------------

    def exempt(self, host: str) -> bool:
        """Whether `host` is never banned nor capped: a configured `exempt` entry,
        or (with `exempt_peers`) a trunk's or a line's peer."""
        modules = self.modules() if self.settings.exempt_peers else ()
        if modules is not self._exempt_modules:
            self._exempt.clear()
            self._exempt_modules = modules
        known = self._exempt.get(host)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        networks = list(self.settings.exempt)
        if self.settings.exempt_peers:
            networks += peer_networks(modules)
        answer = any(ip.version == n.version and ip in n for n in networks)
        if len(self._exempt) >= EXEMPT_CACHE:
            self._exempt.clear()
        self._exempt[host] = answer
        return answer

    # -- caps (the engine and the TCP factory ask) -----------------------------------------

    def admit_transaction(self, transaction: Any) -> bool:
        """Whether a new server transaction from its source may go on: false when
        that source already has `per_source_transactions` requests awaiting our
        final answer (the caller answers 503)."""
        cap = self.settings.per_source_transactions
        if not cap:
            return True
        host = transaction.source.host
        live = self._pending.get(host)
        if live is None:
            self._pending[host] = [transaction]
            return True
        if len(live) >= cap:
            # A transaction has had its final answer once its request is let go.
            live[:] = [t for t in live if t.request is not None]
            if len(live) >= cap:
                if self.exempt(host):
                    return True  # not tracked beyond the cap
                self.dropped["transactions"] += 1
                return False
        live.append(transaction)
        return True

    def admit_call(self, active: int) -> bool:
        """Whether a new call may start with `active` calls up (`max_calls`)."""
        cap = self.settings.max_calls
        if cap and active >= cap:
            self.dropped["calls"] += 1
            return False
        return True

    def _sweep(self) -> None:
        pending = self._pending
        for host in list(pending):
            live = [t for t in pending[host] if t.request is not None]
            if live:
                pending[host] = live
            else:
                del pending[host]

    def tcp_opened(self, host: str) -> bool:
        """An inbound connection from `host` is offered: false (refuse it) when the
        source is banned or holds `per_source_tcp` already."""
        if host in self.banned:
            self.dropped["banned"] += 1
            return False
        cap = self.settings.per_source_tcp
        count = self._tcp.get(host, 0)
        if cap and count >= cap and not self.exempt(host):
            self.dropped["tcp"] += 1
            return False
        self._tcp[host] = count + 1
        return True

    def tcp_closed(self, host: str) -> None:
        """An inbound connection `tcp_opened` accepted has closed."""
        count = self._tcp.get(host, 0) - 1
        if count > 0:
            self._tcp[host] = count
        else:
            self._tcp.pop(host, None)

    # -- reporting ------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Bans in force and requests refused, by reason (the manhole's stats)."""
        return {"bans_active": len(self.banned), "bans_total": self.bans_total, **{
            f"dropped_{reason}": count for reason, count in self.dropped.items()}}

    def refusal(self, request: Any, transaction: Any, active_calls: int) -> Any:
        """The 503 for a request beyond a cap (a new call beyond `max_calls`, or
        one more pending request from a source at its cap), or None to serve it."""
        if request.method == "INVITE" and request.to.tag is None and not self.admit_call(active_calls):
            reason = "Too Many Calls"
        elif not self.admit_transaction(transaction):
            reason = "Too Many Requests From You"
        else:
            return None
        from phpvoip.sip.uas import request_tag

        response = request.response(503, reason, to_tag=request_tag(request))
        response.add("Retry-After", str(self.settings.retry_after))
        return response


def install_limits(settings: LimitSettings, service: Any) -> Limits:
    """Build the flood protection of a `SwitchService` and put it in place: the
    transport's gate, the engine's caps (and through the engine the registrars'
    throttles), a child service for its timer, and ``service.limits``."""
    engine = service.engine
    limits = Limits(settings, service.reactor, lambda: engine.modules)
    service.transport.gate = limits
    engine.limits = limits
    service.limits = limits
    limits.setServiceParent(service)
    return limits
