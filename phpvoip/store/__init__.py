"""Location stores: where the registrar keeps bindings (and may keep users) so they
survive a restart.

`open_store(settings, reactor)` turns the top-level ``storage:`` setting into an
`ILocationStore`: ``memory:`` keeps nothing across a restart, ``sqlite:PATH`` writes
through a single database thread so the reactor never waits on the disk.

A `Binding` is one contact of one address-of-record. Its expiry is an absolute
wall-clock time (what ``reactor.seconds()`` returns on a real reactor), so a binding
loaded after a restart keeps the remaining lifetime it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from phpvoip.sip.address import Address

__all__ = ["Binding", "UserRecord", "open_store", "parse_source", "format_source"]


@dataclass(slots=True, eq=False)
class Binding:
    """One registered contact of an address-of-record (RFC 3261 §10.3).

    `aor` is the user part of the address-of-record (the registrar serves one
    domain); `key` identifies the contact for comparisons (see
    `phpvoip.modules.bindings.contact_key`); `contact` is the URI as the phone
    wrote it, used as the Request-URI of calls to it. `source` is where the
    REGISTER came from (received/rport), where calls go so that phones behind
    NAT are reached. `q` is None when the phone gave no q-value.
    """

    aor: str
    key: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    q: float | None = None
    source: Address | None = None
    registered_at: float = 0.0
    user_agent: str | None = None

    def remaining(self, now: float) -> int:
        """Whole seconds left (for ``;expires=N`` in a 200): rounded, at least 1
        while the binding lives (0 would read as removed), 0 once lapsed."""
        left = self.expires_at - now
        return max(1, int(left + 0.5)) if left > 0 else 0

    def __repr__(self) -> str:
        return f"<Binding {self.aor} {self.contact} until {self.expires_at:.0f}>"


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user the registrar authenticates: HA1 hashes (RFC 7616 §3.4.2) for the
    registrar's realm, never a password."""

    username: str
    ha1_md5: str | None = None
    ha1_sha256: str | None = None


def format_source(source: Address | None) -> str | None:
    """``udp:1.2.3.4:5060`` (the text form stores keep), or None."""
    return None if source is None else str(source)


def parse_source(text: str | None) -> Address | None:
    """The inverse of `format_source`; None for what it cannot read."""
    if not text:
        return None
    transport, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    if not port.isdigit() or not host:
        return None
    return Address(transport, host.strip("[]"), int(port))


def open_store(settings: Any, reactor: Any = None) -> Any:
    """The `ILocationStore` for a `phpvoip.config.StorageSettings`.

    ``sqlite`` creates the database's directory when it is missing. The store is
    ready for use at once; writes queue until its thread runs."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    if settings.kind == "memory":
        from phpvoip.store.memory import MemoryStore

        return MemoryStore()
    if settings.kind == "sqlite":
        from phpvoip.store.sqlite import SqliteStore

        return SqliteStore(settings.path, reactor)
    raise ValueError(f"unknown storage kind {settings.kind!r}")
