"""SipChannel: an outside line. The switch is a phone towards a carrier or a bigger PBX.

It registers the line's number at the upstream server (`line_state.Registration`),
takes the calls the server sends to that number (`callin`), and carries routed calls
whose From is the line's number out through the server (`callout`), answering the
server's 401/407 on the INVITE with the line's credentials (DESIGN.md §1, the seed's
SipChannel; config ``type: channel``).

Outgoing line translation: the call leaves with From ``sip:<line user>@<line domain>``
and To/Request-URI ``sip:<number>@<line domain>``, so the server sees its own
subscriber calling; the leg sets Contact to the switch's own address (the seed's
NAT-like rule).

Known limits: a call that came in on a line is never carried back out on the same
line (the upstream would route the line's number straight back to us); a line whose
registration is failing still tries calls out (the server decides); keepalive is
OPTIONS only (no CRLF pings); over TCP the source port of a call in is not checked,
since a server may open a new connection to reach us.
"""

from __future__ import annotations

import ipaddress
import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.events import LineStateChanged
from phpvoip.interfaces import IModule, IncomingCall, NotMine
from phpvoip.modules.line_state import LineCounters, Registration, RegistrationPolicy
from phpvoip.settings import Section
from phpvoip.sip.address import Address
from phpvoip.sip.digest import DigestClient
from phpvoip.sip.headers import CSeq, NameAddr
from phpvoip.sip.ids import new_call_id, new_tag
from phpvoip.sip.message import Request, Response
from phpvoip.sip.transaction import is_local
from phpvoip.sip.uri import URI

__all__ = ["ChannelSettings", "SipChannel", "parse_settings"]

log = Logger()


@dataclass(frozen=True)
class ChannelSettings:
    """One ``type: channel`` entry of the config."""

    user: str  # user part of the line's address-of-record
    domain: str  # its host part (the carrier's domain)
    server: Address  # where every packet of the line goes
    password: str | None = field(default=None, repr=False)  # never in logs
    auth_user: str | None = None  # digest username, when it is not `user`
    number: str | None = None  # the bound number; `user` when None
    register: bool = True  # false: a static line, calls only
    keepalive: float = 0.0  # seconds between OPTIONS to the server; 0 = off
    policy: RegistrationPolicy = field(default_factory=RegistrationPolicy)
    weight: int = 60

    @property
    def bound_number(self) -> str:
        return self.number if self.number is not None else self.user

    @property
    def aor(self) -> URI:
        return URI("sip", self.user, self.domain)


def parse_settings(section: Section) -> ChannelSettings:
    """Validate a ``type: channel`` section (every error names its key)."""
    server = section.peer_address("server")
    user_text = section.string("user")
    user, at, user_domain = user_text.partition("@")
    if not user or (at and not user_domain) or any(ch in user for ch in " \t;:<>,\"'"):
        raise section.error("user", f"{user_text!r} is not USER or USER@DOMAIN")
    domain = section.string("domain", None) or user_domain or server.host
    if any(ch in domain for ch in " \t;<>@,\"'"):
        raise section.error("domain", f"{domain!r} is not a host name or address")
    password = section.string("password", None)
    register = section.boolean("register", True)
    if register and password is None and section.has("auth_user"):
        raise section.error("password", "is required when auth_user is set")
    expires = section.integer("expires", 3600, minimum=10, maximum=2**31 - 1)
    retry_min = float(section.number("retry_min", 5.0, minimum=0.5))
    retry_max = float(section.number("retry_max", 300.0, minimum=retry_min))
    policy = RegistrationPolicy(
        expires=expires,
        retry_min=retry_min,
        retry_max=retry_max,
        auth_retry=float(section.number("auth_retry", 300.0, minimum=1)),
    )
    return ChannelSettings(
        user=user,
        domain=domain,
        server=server,
        password=password,
        auth_user=section.string("auth_user", None),
        number=section.string("number", None),
        register=register,
        keepalive=float(section.number("keepalive", 0, minimum=0)),
        policy=policy,
        weight=section.integer("weight", 60),
    )


@implementer(IModule)
class SipChannel:
    """An outside line: registration upstream, calls in from the server to the bound
    number, calls out from the bound number through the server.

    The default weight (60) is above a trunk's (50): a line's test for calls in
    (server host and port, and the number) is stricter than a trunk's (source host),
    so on a shared host the line must be asked first.
    """

    def __init__(
        self, name: str, settings: ChannelSettings, random: Callable[[], float] = _random.random
    ) -> None:
        self.name = name
        self.settings = settings
        self.weight = settings.weight
        self.random = random
        self.engine: Any = None
        self.counters = LineCounters()
        self.registration: Registration | None = None
        self._keepalive: IDelayedCall | None = None
        self._keepalive_pending = False
        self._running = False

    def __repr__(self) -> str:
        return f"<SipChannel {self.name} {self.settings.aor} via {self.settings.server} {self.state}>"

    # -- health ----------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The registration state (`LineState`), or ``static`` for a line that does
        not register."""
        if self.registration is None:
            return "static"
        return self.registration.state

    def snapshot(self) -> dict[str, Any]:
        """The line's state and counters as plain data (manhole, metrics)."""
        data: dict[str, Any] = {
            "name": self.name,
            "number": self.settings.bound_number,
            "state": self.state,
            "counters": self.counters.as_dict(),
        }
        if self.registration is not None:
            data["registration"] = self.registration.snapshot()
        return data

    def credentials(self) -> DigestClient | None:
        """Fresh digest credentials of the line, or None without a password.

        Each call and the registration get their own client: nonce counts and the
        refusal check of one must not be disturbed by another."""
        settings = self.settings
        if settings.password is None:
            return None
        return DigestClient(settings.auth_user or settings.user, settings.password)

    # -- IModule ------------------------------------------------------------------------

    def start(self, engine: Any) -> None:
        self.engine = engine
        self._running = True
        settings = self.settings
        if settings.register:
            local = engine.local_address(settings.server.transport)
            params = {"transport": "tcp"} if settings.server.transport == "tcp" else None
            contact = URI("sip", settings.user, local.host, local.port, params)
            self.registration = Registration(
                settings.aor,
                settings.server,
                contact,
                self.credentials(),
                engine.clock,
                engine.send_request,
                settings.policy,
                self.counters,
                self.random,
                self.name,
            )
            self.registration.on_state = self._state_changed
            self.registration.start()
        if settings.keepalive > 0:
            self._schedule_keepalive()
        log.info(
            "line {line}: {aor} via {server}, number {number}, {mode}",
            line=self.name,
            aor=str(settings.aor),
            server=str(settings.server),
            number=settings.bound_number,
            mode="registering" if settings.register else "static",
        )

    def _state_changed(self, old: str, new: str) -> None:
        self.engine.events.publish(LineStateChanged(self.engine.clock.seconds(), self.name, old, new))

    def stop(self) -> defer.Deferred:
        """Stop the keepalive and unregister; fires when the server answered the
        Expires: 0 or after the policy's `unregister_timeout`."""
        self._running = False
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None
        if self.registration is None:
            return defer.succeed(None)
        return self.registration.stop()

    def reconfigure(self, settings: ChannelSettings) -> bool:
        """Apply new settings in place (a reload) when the registration is not
        concerned: the bound number, the keepalive and the weight. Anything else
        (server, user, credentials, timings) returns False: the line must
        unregister and register again."""
        old = self.settings
        unchanged = dict(number=old.number, keepalive=old.keepalive, weight=old.weight)
        if replace(settings, **unchanged) != old:
            return False
        self.settings, self.weight = settings, settings.weight
        if settings.keepalive != old.keepalive and self._running:
            if self._keepalive is not None and self._keepalive.active():
                self._keepalive.cancel()
            self._keepalive = None
            if settings.keepalive > 0:
                self._schedule_keepalive()
        return True

    def request(self, request: Any, transaction: Any, source: Any) -> bool:
        raise NotMine()

    def from_server(self, source: Address | None) -> bool:
        """Whether a message from `source` comes from the line's server (host, and
        port over UDP: a TCP server may reach us on a new connection)."""
        if source is None:
            return False
        server = self.settings.server
        try:
            same_host = ipaddress.ip_address(source.host) == ipaddress.ip_address(server.host)
        except ValueError:
            return False
        return same_host and (server.transport == "tcp" or source.port == server.port)

    def callin(self, call: IncomingCall) -> Any:
        """A call from the server to the bound number (To or Request-URI user)."""
        if not self.from_server(call.source):  # type: ignore[arg-type]
            raise NotMine()
        invite: Request = call.invite  # type: ignore[assignment]
        number = self.settings.bound_number
        if invite.to.uri.user != number and invite.uri.user != number:
            raise NotMine()
        call.attributes["line"] = self.name
        self.counters.calls_in += 1
        log.debug("line {line}: call in for {number}", line=self.name, number=number, callID=call.call_id)
        return self.engine.inbound_leg(call)

    def callout(self, invite: Request, call: IncomingCall) -> Any:
        """A routed call whose From is the bound number goes out through the server,
        From and To translated into the line's domain."""
        settings = self.settings
        if invite.from_.uri.user != settings.bound_number:
            raise NotMine()
        if call.attributes.get("line") == self.name:
            raise NotMine()  # it came in on this line: sending it back would loop
        to_user = invite.to.uri.user
        if not to_user:
            raise NotMine()
        request = self.build_invite(invite)
        self.counters.calls_out += 1
        return self.engine.outbound_leg(request, settings.server, credentials=self.credentials())

    def explain_callout(self, invite: Request) -> str | None:
        """For the manhole's route(): whether `callout` takes `invite` and why (a call
        that came in on this line is not sent back on it; route() cannot know that)."""
        number = self.settings.bound_number
        if invite.from_.uri.user != number or not invite.to.uri.user:
            return None
        return (f"From is the line's number {number}: out through {self.settings.server} to "
                f"sip:{invite.to.uri.user}@{self.settings.domain} (line {self.state})")

    def build_invite(self, invite: Request) -> Request:
        """The template the outbound leg sends: Request-URI and To
        ``sip:<to user>@<line domain>``, From ``sip:<line user>@<line domain>``,
        display names kept. Via, Contact, Call-ID and CSeq are the leg's."""
        domain = self.settings.domain
        to_user = invite.to.uri.user
        request = Request("INVITE", URI("sip", to_user, domain))
        request.add("From", NameAddr(URI("sip", self.settings.user, domain), invite.from_.display))
        request.add("To", NameAddr(URI("sip", to_user, domain), invite.to.display))
        return request

    # -- keepalive ----------------------------------------------------------------------

    def _schedule_keepalive(self) -> None:
        if self._running:
            self._keepalive = self.engine.clock.callLater(self.settings.keepalive, self._send_keepalive)

    def build_options(self) -> Request:
        """An OPTIONS to the server itself, keeping NAT bindings on the way open
        and telling us whether the server is still there."""
        server = self.settings.server
        target = URI("sip", None, server.host, server.port)
        request = Request("OPTIONS", target)
        from_ = NameAddr(self.settings.aor)
        from_.tag = new_tag()
        request.add("From", from_)
        request.add("To", NameAddr(target.copy()))
        request.add("Call-ID", new_call_id(server.host))
        request.add("CSeq", CSeq(1, "OPTIONS"))
        return request

    def _send_keepalive(self) -> None:
        self._keepalive = None
        if not self._running:
            return
        if not self._keepalive_pending:
            self._keepalive_pending = True
            self.counters.keepalives_sent += 1
            d = defer.maybeDeferred(self.engine.send_request, self.build_options(), self.settings.server)
            d.addCallbacks(self._keepalive_answered, self._keepalive_error)
            d.addErrback(lambda f: log.failure("line {line}: keepalive", f, line=self.name))
        self._schedule_keepalive()

    def _keepalive_answered(self, response: Response) -> None:
        self._keepalive_pending = False
        # Any answer at all, even 404 or 501, shows the server and the path are up.
        if is_local(response) and response.status in (408, 503):
            self._keepalive_lost(f"{response.status} {response.reason}")

    def _keepalive_error(self, failure: Any) -> None:
        self._keepalive_pending = False
        log.failure("line {line}: sending keepalive failed", failure, line=self.name)
        self._keepalive_lost("send failed")

    def _keepalive_lost(self, why: str) -> None:
        self.counters.keepalives_failed += 1
        if not self._running:
            return
        log.warn("line {line}: server {server} did not answer keepalive ({why})", line=self.name,
                 server=str(self.settings.server), why=why)
        if self.registration is not None:
            self.registration.lost()
