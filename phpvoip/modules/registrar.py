"""SipRegistrar: phones and softphones register here, call each other, and are called.

REGISTER (RFC 3261 §10.3) is answered with a digest challenge (401,
WWW-Authenticate; RFC 7616/8760, qop=auth, stateless HMAC nonces that go stale),
then the bindings are changed: several contacts per address-of-record, each with
its own expiry (Contact ``expires`` over the Expires header over
`default_expires`) and q-value; too brief → 423 with Min-Expires; too long → cut
to `max_expires`; expiry 0 or ``Contact: *`` removes; no Contact fetches. The 200
lists every current contact with the seconds it has left.

Calls: an INVITE whose From is at our domain must carry valid
Proxy-Authorization (else 407, `callin`; with ``challenge_unknown: false`` only
INVITEs from known users are taken, the rest go on to the other modules). An
INVITE to a registered user rings all of its contacts at once through a
`ForkLeg` (`callout`), sent to where each REGISTER came from so that phones
behind NAT are reached. A known user with no live contact gets 480; a user we do
not know is not ours (`NotMine`).

The address-of-record is the user part alone: the registrar serves one domain (the
switch's, its addresses, and `aliases`). Bindings live in a `BindingTable` and are
written behind to the location store the engine offers as ``engine.store``
(`phpvoip.store`), and loaded from it at start, so they survive a restart.

Config (``type: registrar``): users, users_file, users_from_store, realm,
algorithms, min_expires, max_expires, default_expires, nonce_lifetime,
max_contacts, auth_failures {limit, window, block}, aliases, route_to,
challenge_unknown, weight.

Known limits: third-party registration is refused (403); RFC 5626 outbound,
GRUU and Path are not supported; an INVITE is authenticated but not checked
against the caller's registered contact; users are read at start and again at
each reload (SIGHUP), which keeps the bindings (`reconfigure`).
"""

from __future__ import annotations

import email.utils
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.events import Registered, RegistrationRefused, Unregistered
from phpvoip.interfaces import CallRejected, IModule, IncomingCall, NotMine
from phpvoip.legs.fork import ForkLeg
from phpvoip.modules.bindings import BindingTable, contact_key
from phpvoip.modules.throttle import AuthThrottle, ThrottleSettings
from phpvoip.modules.users import UserDirectory, UserSpec, parse_users, read_users_file
from phpvoip.settings import Section
from phpvoip.sip.address import Address
from phpvoip.sip.digest import DigestServer, Outcome, canonical_algorithm
from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers import STAR, NameAddr
from phpvoip.sip.message import Request, Response
from phpvoip.sip.uas import request_tag
from phpvoip.sip.uri import URI, parse_uri, unescape
from phpvoip.store import Binding
from phpvoip.store.memory import MemoryStore

__all__ = ["Registrar", "RegistrarSettings", "parse_settings"]

log = Logger()

_MAX_DELTA = 2**32 - 1  # delta-seconds ceiling (§25.1)


@dataclass(frozen=True)
class RegistrarSettings:
    """One ``type: registrar`` entry of the config."""

    users: dict[str, UserSpec] = field(default_factory=dict, repr=False)
    users_from_store: bool = False
    realm: str | None = None  # None: the switch's domain
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600
    nonce_lifetime: float = 300.0
    max_contacts: int = 10
    auth_failures: ThrottleSettings = field(default_factory=ThrottleSettings)
    aliases: tuple[str, ...] = ()
    route_to: str = "source"  # "source" (NAT-friendly) or "contact"
    challenge_unknown: bool = True  # INVITEs from unknown users at our domain get 407 too
    weight: int = 100


def parse_settings(section: Section) -> RegistrarSettings:
    """Validate a ``type: registrar`` section (every error names its key)."""
    users = parse_users(section, "users")
    users_file = section.string("users_file", None)
    if users_file is not None:
        path = Path(users_file)
        if not path.is_absolute():
            path = Path(section.file).resolve().parent / path
        for name, spec in read_users_file(path, section, "users_file").items():
            if name in users:
                raise section.error("users_file", f"user {name!r} is also in {section.key('users')}")
            users[name] = spec
    from_store = section.boolean("users_from_store", False)
    if not users and not from_store:
        raise section.error("users", "a registrar needs users (users, users_file or users_from_store: true)")
    algorithms = tuple(section.strings("algorithms", ["SHA-256", "MD5"]))
    canonical = []
    for i, name in enumerate(algorithms):
        canon = canonical_algorithm(name)
        if canon is None:
            raise section.error(f"algorithms[{i}]", f"{name!r} is not a digest algorithm we support")
        if canon in canonical:
            raise section.error(f"algorithms[{i}]", f"{canon} is listed twice")
        canonical.append(canon)
    if not canonical:
        raise section.error("algorithms", "must name at least one algorithm")
    min_expires = section.integer("min_expires", 60, minimum=0, maximum=86400)
    max_expires = section.integer("max_expires", 3600, minimum=1, maximum=_MAX_DELTA)
    if max_expires < min_expires:
        raise section.error("max_expires", f"must not be below min_expires ({min_expires})")
    default_expires = section.integer("default_expires", min(max(3600, min_expires), max_expires), minimum=1)
    if not min_expires <= default_expires <= max_expires:
        raise section.error(
            "default_expires", f"must be between min_expires ({min_expires}) and max_expires ({max_expires})"
        )
    failures = section.section("auth_failures", {})
    throttle = ThrottleSettings(
        limit=failures.integer("limit", 10, minimum=0),
        window=float(failures.number("window", 60.0, minimum=1)),
        block=float(failures.number("block", 300.0, minimum=0)),
    )
    failures.check_unknown()
    aliases = tuple(section.strings("aliases", []))
    route_to = section.string("route_to", "source")
    if route_to not in ("source", "contact"):
        raise section.error("route_to", f"must be 'source' or 'contact', not {route_to!r}")
    realm = section.string("realm", None)
    if realm is not None and (not realm or '"' in realm or "\\" in realm):
        raise section.error("realm", f"{realm!r} cannot be a digest realm")
    return RegistrarSettings(
        users=users,
        users_from_store=from_store,
        realm=realm,
        algorithms=tuple(canonical),
        min_expires=min_expires,
        max_expires=max_expires,
        default_expires=default_expires,
        nonce_lifetime=float(section.number("nonce_lifetime", 300.0, minimum=5, maximum=86400)),
        max_contacts=section.integer("max_contacts", 10, minimum=1, maximum=1000),
        auth_failures=throttle,
        aliases=aliases,
        route_to=route_to,
        challenge_unknown=section.boolean("challenge_unknown", True),
        weight=section.integer("weight", 100),
    )


def _header_values(message: Request, name: str) -> list[str]:
    """Every line of a header whose values hold commas (Authorization): not split."""
    name = name.lower()
    return [value for n, value in message.headers() if n.lower() == name]


def _ip_host(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class _Refusal(Exception):
    """A REGISTER answered with an error; carries the response. `refused` is False
    for a plain digest challenge (the normal first answer), which is published as
    no refusal."""

    def __init__(self, response: Response, refused: bool = True) -> None:
        super().__init__(response.status)
        self.response = response
        self.refused = refused


@implementer(IModule)
class Registrar:
    """Users register here; calls from them are authenticated, calls to them forked."""

    # Tells the front door that a REGISTER for another domain gets 403, not 501.
    registers_users = True

    def __init__(self, name: str, settings: RegistrarSettings) -> None:
        self.name = name
        self.settings = settings
        self.weight = settings.weight
        self.engine: Any = None
        self.store: Any = None
        self.users: UserDirectory | None = None
        self.digest: DigestServer | None = None
        self.bindings: BindingTable | None = None
        self.throttle: AuthThrottle | None = None
        self.hosts: frozenset[str] = frozenset()
        self.ready = False
        self._agents: dict[str, str] = {}
        self.stats = {"registered": 0, "challenged": 0, "auth_failed": 0, "refused": 0, "lapsed": 0}

    def __repr__(self) -> str:
        return f"<Registrar {self.name} {self.bindings!r}>"

    # -- life cycle -----------------------------------------------------------------------

    def start(self, engine: Any) -> defer.Deferred:
        """Take the store from ``engine.store`` (a memory store when there is
        none), load the bindings still valid and the nonce secret, then serve."""
        settings = self.settings
        self.engine = engine
        clock = engine.clock
        self.store = getattr(engine, "store", None) or MemoryStore()
        realm = settings.realm or engine.domain
        self.users = UserDirectory(realm)
        self.throttle = AuthThrottle(clock, settings.auth_failures, module=self.name,
                                     bans=getattr(engine, "limits", None))
        self.bindings = BindingTable(clock, self._lapsed)
        self.hosts = self._local_hosts(engine)
        loads = [
            self.store.secret(f"digest-nonce:{realm}"),
            self.store.load(clock.seconds()),
            self.store.load_users() if settings.users_from_store else defer.succeed([]),
        ]
        d = defer.gatherResults(loads, consumeErrors=True)
        d.addCallback(self._loaded, realm)
        return d

    def _loaded(self, results: list[Any], realm: str) -> None:
        secret, bindings, stored_users = results
        settings = self.settings
        assert self.users is not None and self.bindings is not None
        bases = tuple(dict.fromkeys(a.removesuffix("-sess") for a in settings.algorithms))
        for record in stored_users:
            self.users.add_record(record)
        for username, spec in settings.users.items():
            self.users.add_spec(username, spec, bases)
        self.digest = DigestServer(
            realm,
            secret,
            self.engine.clock,
            nonce_lifetime=settings.nonce_lifetime,
            algorithms=settings.algorithms,
        )
        for binding in bindings:
            self.bindings.put(binding)
        self.ready = True
        log.info(
            "registrar {name}: realm {realm!r}, {users} users, {bindings} bindings restored",
            name=self.name,
            realm=realm,
            users=len(self.users),
            bindings=len(self.bindings),
        )

    def stop(self) -> defer.Deferred:
        """Stop the expiry timer and let the store write what it holds."""
        self.ready = False
        if self.bindings is not None:
            self.bindings.stop()
        if self.store is None:
            return defer.succeed(None)
        return self.store.flush()

    def reconfigure(self, settings: RegistrarSettings) -> bool:
        """Apply new settings in place (a reload), keeping every binding: users and
        the digest server are rebuilt and swapped in once the store has answered;
        limits, aliases and the throttle's settings apply at once. Bindings longer
        than a lowered `max_expires` keep their expiry until they are refreshed."""
        if self.engine is None:
            self.settings, self.weight = settings, settings.weight
            return True
        old, self.settings, self.weight = self.settings, settings, settings.weight
        self.hosts = self._local_hosts(self.engine)
        if self.throttle is not None:
            self.throttle.settings = settings.auth_failures
        realm = settings.realm or self.engine.domain
        new_digest = (realm, settings.algorithms, settings.nonce_lifetime) != (
            old.realm or self.engine.domain, old.algorithms, old.nonce_lifetime)
        loads = [
            self.store.secret(f"digest-nonce:{realm}") if new_digest else defer.succeed(None),
            self.store.load_users() if settings.users_from_store else defer.succeed([]),
        ]
        d = defer.gatherResults(loads, consumeErrors=True)
        d.addCallback(self._users_reloaded, realm)
        d.addErrback(lambda f: log.failure("registrar {name}: reloading users failed", f, name=self.name))
        return True

    def _users_reloaded(self, results: list[Any], realm: str) -> None:
        secret, stored_users = results
        settings = self.settings
        users = UserDirectory(realm)
        bases = tuple(dict.fromkeys(a.removesuffix("-sess") for a in settings.algorithms))
        for record in stored_users:
            users.add_record(record)
        for username, spec in settings.users.items():
            users.add_spec(username, spec, bases)
        if secret is not None:
            # Nonces of the old digest server go stale: phones are challenged again.
            self.digest = DigestServer(realm, secret, self.engine.clock,
                                       nonce_lifetime=settings.nonce_lifetime, algorithms=settings.algorithms)
        self.users = users

    def _local_hosts(self, engine: Any) -> frozenset[str]:
        hosts = {engine.domain.lower().strip("[]")}
        hosts.update(a.lower().strip("[]") for a in self.settings.aliases)
        for transport in ("udp", "tcp"):
            try:
                hosts.add(engine.local_address(transport).host.lower())
            except Exception:  # no such transport bound: nothing to add
                continue
        return frozenset(hosts)

    def is_local(self, uri: URI) -> bool:
        """Whether a sip/sips URI names this registrar's domain."""
        if not uri.is_sip or uri.scheme not in ("sip", "sips"):
            return False
        host = uri.host.lower().strip("[]")
        if host in self.hosts:
            return True
        # The transport may have bound more addresses since start.
        self.hosts = self._local_hosts(self.engine)
        return host in self.hosts

    def counts(self) -> dict[str, int]:
        """Bindings and counters, for the manhole and metrics."""
        table = self.bindings
        return {
            "aors": table.aors if table is not None else 0,
            "bindings": len(table) if table is not None else 0,
            "users": len(self.users) if self.users is not None else 0,
            "blocked_sources": self.throttle.blocks if self.throttle is not None else 0,
            **self.stats,
        }

    # -- REGISTER -------------------------------------------------------------------------

    def request(self, request: Request, transaction: Any, source: Address) -> bool:
        """Answer REGISTER for our domain; everything else is not ours."""
        if request.method != "REGISTER" or not self.is_local(request.uri):
            raise NotMine()
        transaction.respond(self.register(request, source))
        return True

    def register(self, request: Request, source: Address | None) -> Response:
        """The response to one REGISTER (RFC 3261 §10.3), bindings changed."""
        try:
            response = self._register(request, source)
        except _Refusal as refusal:
            self.stats["refused"] += 1
            response = refusal.response
            if not refusal.refused:
                return response
        if response.status >= 300 and self.engine is not None:
            user = request.to.uri.user
            self.engine.events.publish(RegistrationRefused(
                self.engine.clock.seconds(), self.name, unescape(user) if user else "", response.status,
                response.reason, source))
        return response

    def _answer(self, request: Request, status: int, reason: str | None = None) -> Response:
        return request.response(status, reason, request_tag(request))

    def _refuse(self, request: Request, status: int, reason: str | None = None) -> _Refusal:
        return _Refusal(self._answer(request, status, reason))

    def _register(self, request: Request, source: Address | None) -> Response:
        if not self.ready:
            response = self._answer(request, 503, "Registrar Starting")
            response.add("Retry-After", "5")
            return response
        # §10.3 step 3: authenticate (§22) before anything about the AOR is said.
        username = self._authenticate(request, source, proxy=False)
        # §10.3 step 5: the AOR is the To URI; "If the address-of-record is not
        # valid for the domain in the Request-URI, the registrar MUST send a 404".
        to_uri = request.to.uri
        if not self.is_local(to_uri) or not to_uri.user:
            raise self._refuse(request, 404, "Not Found")
        aor = unescape(to_uri.user)
        # §10.3 step 4: is the authenticated user allowed to change this AOR?
        if username != aor:
            raise self._refuse(request, 403, "Not Allowed To Register This Address")
        now = self.engine.clock.seconds()
        contacts = request.contact
        if contacts is STAR:
            self._unregister_all(request, aor)
        elif contacts:
            self._update(request, aor, contacts, source, now)
        self.stats["registered"] += 1
        return self._ok(request, aor, now)

    def _authenticate(self, request: Request, source: Address | None, proxy: bool) -> str:
        """The authenticated user name, or a `_Refusal` (401/407 challenge, 403
        for a blocked source, 400 for malformed credentials)."""
        assert self.digest is not None and self.throttle is not None and self.users is not None
        host = source.host if source is not None else None
        if host is not None and self.throttle.blocked(host):
            raise self._refuse(request, 403, "Forbidden")
        header = "Proxy-Authorization" if proxy else "Authorization"
        try:
            credentials = self.digest.find_credentials(_header_values(request, header))
        except ParseError:
            raise self._refuse(request, 400, f"Malformed {header}") from None
        if credentials is None:
            raise self._challenge(request, host, proxy, stale=False)
        result = self.digest.verify(credentials, request.method, self.users.lookup, source=host)
        if result.ok:
            if host is not None:
                self.throttle.succeeded(host)
            return result.username or ""
        if result.outcome is Outcome.BAD:
            raise self._refuse(request, 400, "Bad Credentials")
        if result.outcome is Outcome.FAILED:
            # The same answer for an unknown user and a wrong password.
            self.stats["auth_failed"] += 1
            if host is not None and self.throttle.failed(host, result.username):
                raise self._refuse(request, 403, "Forbidden")
        challenge = self._challenge(request, host, proxy, stale=result.stale)
        challenge.refused = result.outcome is Outcome.FAILED  # wrong credentials: a refusal
        raise challenge

    def _challenge(self, request: Request, host: str | None, proxy: bool, stale: bool) -> _Refusal:
        assert self.digest is not None
        self.stats["challenged"] += 1
        status = 407 if proxy else 401
        response = self._answer(request, status)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        for value in self.digest.challenge(stale=stale, source=host):
            response.add(name, value)
        return _Refusal(response, refused=False)

    def _expiry(self, request: Request, contact: NameAddr) -> int:
        """§10.2.1.1: the contact's ``expires`` parameter, else the Expires header,
        else our default."""
        text = contact.params.get("expires")
        if text is None:
            text = request.get("Expires")
        if text is None:
            return self.settings.default_expires
        return min(int(text), _MAX_DELTA)

    def _update(self, request: Request, aor: str, contacts: list[NameAddr], source: Address | None,
                now: float) -> None:
        assert self.bindings is not None
        settings = self.settings
        call_id = request.call_id
        cseq = request.cseq.seq
        wanted: dict[str, tuple[NameAddr, int]] = {}
        for contact in contacts:
            if contact.uri.scheme not in ("sip", "sips") or not contact.uri.is_sip:
                raise self._refuse(request, 400, "Contact Must Be A SIP URI")
            expires = self._expiry(request, contact)
            # §10.3 step 7: "If and only if the requested expiration interval is
            # greater than zero AND smaller than one hour AND less than a
            # registrar-configured minimum, the registrar MAY reject ... with 423".
            if 0 < expires < min(settings.min_expires, 3600):
                response = self._answer(request, 423)
                response.add("Min-Expires", str(settings.min_expires))
                raise _Refusal(response)
            wanted[contact_key(contact.uri)] = (contact, min(expires, settings.max_expires))
        changes: list[tuple[str, NameAddr, int]] = []
        for key, (contact, expires) in wanted.items():
            existing = self.bindings.lookup(aor, key)
            if existing is not None and existing.call_id == call_id and cseq <= existing.cseq:
                # §10.3 step 7: same Call-ID and a CSeq not above the binding's is
                # an old request arriving late. The RFC fails the request; we
                # leave that binding as it is and answer with the current set.
                continue
            changes.append((key, contact, expires))
        added = sum(1 for key, _, e in changes if e > 0 and self.bindings.lookup(aor, key) is None)
        removed = sum(1 for key, _, e in changes if e == 0 and self.bindings.lookup(aor, key) is not None)
        if self.bindings.count(aor) + added - removed > settings.max_contacts:
            raise self._refuse(request, 403, "Too Many Contacts")
        user_agent = request.get("User-Agent")
        for key, contact, expires in changes:
            existing = self.bindings.lookup(aor, key)
            if expires == 0:
                if existing is not None:
                    self._remove(aor, key)
                continue
            q = contact.params.get("q")
            text = str(contact.uri)
            binding = Binding(
                aor=aor,
                key=text if text == key else key,  # one string, not two, when they agree
                contact=text,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                q=float(q) if q else None,
                source=source,
                registered_at=existing.registered_at if existing is not None else now,
                user_agent=self._user_agent(user_agent),
            )
            self.bindings.put(binding)
            self._save(binding)
            self.engine.events.publish(Registered(now, self.name, aor, binding.contact, expires, source,
                                                  existing is not None))

    def _user_agent(self, text: str | None) -> str | None:
        """One string per distinct User-Agent (phones of a kind share it), from a
        bounded cache so that odd values cannot grow it."""
        if not text:
            return None
        text = text[:200]
        cached = self._agents.get(text)
        if cached is not None:
            return cached
        if len(self._agents) < 1000:
            self._agents[text] = text
        return text

    def _unregister_all(self, request: Request, aor: str) -> None:
        """§10.3 step 6: ``Contact: *`` is only valid with an expiry of 0."""
        assert self.bindings is not None
        expires = request.get("Expires")
        if expires is None or int(expires) != 0:
            raise self._refuse(request, 400, "Contact * Needs Expires 0")
        call_id = request.call_id
        cseq = request.cseq.seq
        for binding in list(self.bindings.get(aor)):
            if binding.call_id == call_id and cseq <= binding.cseq:
                continue  # an older request than the one that made this binding
            self._remove(aor, binding.key)

    def _ok(self, request: Request, aor: str, now: float) -> Response:
        """§10.3 step 8: 200 listing every current binding with its expires."""
        assert self.bindings is not None
        response = self._answer(request, 200)
        for binding in self.bindings.get(aor, now):
            params: dict[str, str | None] = {"expires": str(binding.remaining(now))}
            if binding.q is not None:
                params["q"] = _q_text(binding.q)
            response.add("Contact", NameAddr(parse_uri(binding.contact), None, params))
        response.add("Date", _http_date(now))
        return response

    # -- bindings and the store ---------------------------------------------------------------

    def _remove(self, aor: str, key: str) -> None:
        assert self.bindings is not None
        binding = self.bindings.remove(aor, key)
        if binding is not None:
            self.store.delete(aor, key).addErrback(self._store_failed)
            self.engine.events.publish(Unregistered(self.engine.clock.seconds(), self.name, aor,
                                                    binding.contact, "unregistered"))
            log.debug("registrar {name}: {aor} removed {key}", name=self.name, aor=aor, key=key)

    def _save(self, binding: Binding) -> None:
        self.store.save(binding).addErrback(self._store_failed)

    def _lapsed(self, binding: Binding) -> None:
        self.stats["lapsed"] += 1
        self.store.delete(binding.aor, binding.key).addErrback(self._store_failed)
        self.engine.events.publish(Unregistered(self.engine.clock.seconds(), self.name, binding.aor,
                                                binding.contact, "expired"))
        log.debug("registrar {name}: {aor} at {contact} lapsed", name=self.name, aor=binding.aor,
                  contact=binding.contact)

    def _store_failed(self, failure: Any) -> None:
        # The store has logged the failure; the binding table stays the truth.
        return None

    def contacts(self, aor: str) -> list[Binding]:
        """The live bindings of `aor` (the user part), best first."""
        return self.bindings.get(aor) if self.bindings is not None else []

    # -- calls ----------------------------------------------------------------------------

    def callin(self, call: IncomingCall) -> Any:
        """A call from one of our users: 407 until its Proxy-Authorization is
        right, then an inbound leg."""
        invite: Request = call.invite  # type: ignore[assignment]
        caller = invite.from_.uri
        if call.source is None or not self.ready or not caller.user or not self.is_local(caller):
            raise NotMine()
        assert self.users is not None
        user = unescape(caller.user)
        if user not in self.users and not self.settings.challenge_unknown:
            raise NotMine()
        # An unknown user is challenged like a known one (and fails like a wrong
        # password), so INVITEs cannot list our users either.
        try:
            username = self._authenticate(invite, call.source, proxy=True)
        except _Refusal as refusal:
            response = refusal.response
            headers = tuple((n, v) for n, v in response.headers() if n == "Proxy-Authenticate")
            # A challenge is not the last word: a trunk or line that knows this
            # source by its address may still take the call (see CallRejected).
            final = response.status not in (401, 407)
            raise CallRejected(response.status, response.reason, headers, final=final) from None
        if username != user:
            raise CallRejected(403, "Credentials Do Not Match From")
        return self.engine.inbound_leg(call)

    def callout(self, invite: Request, call: IncomingCall) -> Any:
        """A call to one of our users: all its contacts ring at once; 480 when it
        has none."""
        callee = invite.to.uri
        # The Request-URI names where the call was sent (us, e.g. via a line whose
        # To stays in the carrier's domain); the router rewrote both users alike.
        if not self.ready or not callee.user or not (self.is_local(invite.uri) or self.is_local(callee)):
            raise NotMine()
        assert self.users is not None and self.bindings is not None
        user = unescape(callee.user)
        bindings = self.bindings.get(user)
        if not bindings:
            if user in self.users:
                raise CallRejected(480, "Temporarily Unavailable")
            raise NotMine()
        caller = invite.from_
        domain = self.engine.domain
        referred_by = invite.get("Referred-By")  # a transfer's (RFC 3892)
        branches = []
        for binding in bindings:
            request = Request("INVITE", parse_uri(binding.contact))
            request.add("From", NameAddr(URI("sip", caller.uri.user or "anonymous", domain), caller.display))
            request.add("To", NameAddr(URI("sip", callee.user, domain), invite.to.display))
            if referred_by:
                request.add("Referred-By", referred_by)
            branches.append(self.engine.outbound_leg(request, self._destination(binding)))
        return ForkLeg(branches, label=user)

    def explain_callout(self, invite: Request) -> str | None:
        """For the manhole's route(): what `callout` would do with `invite`, without
        ringing anything (None: not ours)."""
        callee = invite.to.uri
        if not self.ready or not callee.user or not (self.is_local(invite.uri) or self.is_local(callee)):
            return None
        assert self.users is not None and self.bindings is not None
        user = unescape(callee.user)
        bindings = self.bindings.get(user)
        if not bindings:
            return f"refuses 480: user {user} has no registered contact" if user in self.users else None
        where = ", ".join(f"{b.contact} via {self._destination(b)}" for b in bindings)
        return f"rings user {user} at {len(bindings)} registered contact(s): {where}"

    def _destination(self, binding: Binding) -> Address:
        """Where calls to a binding go: where its REGISTER came from (reaches
        phones behind NAT), or its contact's address with ``route_to: contact``
        (when that is an IP address)."""
        source = binding.source
        if self.settings.route_to == "source" and source is not None:
            return source
        uri = parse_uri(binding.contact)
        host = _ip_host(uri.host)
        if host is None:
            if source is not None:
                return source
            raise CallRejected(480, "Contact Not Reachable")
        transport = uri.transport or "udp"
        return Address(transport if transport in ("udp", "tcp") else "udp", host, uri.port or 5060)


def _q_text(q: float) -> str:
    """A qvalue as §25.1 writes it: at most three decimals."""
    text = f"{q:.3f}".rstrip("0").rstrip(".")
    return text if text else "0"


_date_cache: tuple[int, str] = (-1, "")


def _http_date(now: float) -> str:
    """The Date header for `now`, made once per second (a busy registrar sends
    thousands of 200s a second, and formatdate is not free)."""
    global _date_cache
    second = int(now)
    if _date_cache[0] != second:
        _date_cache = (second, email.utils.formatdate(second, usegmt=True))
    return _date_cache[1]
