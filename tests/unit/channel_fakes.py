"""Fakes for the outside-line tests: an engine whose requests the test answers by
hand, and an upstream registrar that really checks digest credentials."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock

from phpvoip.events import CallEvents
from phpvoip.modules.line_state import header_lines
from phpvoip.sip.address import Address
from phpvoip.sip.digest import DigestServer, ha1
from phpvoip.sip.message import Request, Response
from phpvoip.sip.timers import Timers
from phpvoip.sip.transaction_base import local_response

SERVER = Address("udp", "127.0.0.1", 5070)
LOCAL = Address("udp", "127.0.0.1", 5060)
REALM = "carol.example"


@dataclass
class Sent:
    """One request a module handed to `send_request`, with the Deferred to fire."""

    request: Request
    destination: Address
    deferred: defer.Deferred
    answered: bool = False

    def answer(
        self, status: int, headers: tuple[tuple[str, Any], ...] = (), reason: str | None = None
    ) -> None:
        response = self.request.response(status, reason)
        for name, value in headers:
            response.add(name, value)
        self.reply(response)

    def reply(self, response: Response) -> None:
        assert not self.answered, "answered twice"
        self.answered = True
        self.deferred.callback(response)

    def timeout(self) -> None:
        """What the engine's client transaction reports when nobody answers."""
        self.reply(local_response(self.request, 408))


@dataclass
class FakeEngine:
    """Just enough `IEngine` for a line: a clock, requests kept for the test to
    answer, and legs recorded instead of built."""

    clock: Clock = field(default_factory=Clock)
    domain: str = "127.0.0.1"
    timers: Timers = field(default_factory=Timers)
    sent: list[Sent] = field(default_factory=list)
    inbound: list[Any] = field(default_factory=list)
    outbound: list[tuple[Request, Address, Any]] = field(default_factory=list)
    events: CallEvents = field(default_factory=CallEvents)  # what the line publishes

    def local_address(self, transport: str = "udp") -> Address:
        return Address(transport, LOCAL.host, LOCAL.port)

    def send_request(self, request: Request, destination: Address) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.sent.append(Sent(request, destination, d))
        return d

    def inbound_leg(self, call: Any) -> Any:
        leg = ("inbound leg", call)
        self.inbound.append(leg)
        return leg

    def outbound_leg(self, invite: Request, destination: Address, credentials: Any = None) -> Any:
        self.outbound.append((invite, destination, credentials))
        return ("outbound leg", invite)

    def pending(self) -> list[Sent]:
        return [s for s in self.sent if not s.answered]

    def last(self) -> Sent:
        pending = self.pending()
        assert pending, "nothing was sent"
        return pending[-1]

    def registers(self) -> list[Request]:
        return [s.request for s in self.sent if s.request.method == "REGISTER"]


class Upstream:
    """A registrar that challenges with `DigestServer` and checks the answers
    against its own password, as a carrier would."""

    def __init__(
        self,
        clock: Clock,
        password: str = "secret",
        algorithms: tuple[str, ...] = ("SHA-256", "MD5"),
        qop: tuple[str, ...] = ("auth",),
        proxy: bool = False,
        grant: int | None = None,
        users: tuple[str, ...] = ("2005",),
    ) -> None:
        self.digest = DigestServer(REALM, b"k" * 32, clock, algorithms=algorithms, qop=qop)
        self.password = password
        self.proxy = proxy
        self.grant = grant
        self.users = users
        self.outcomes: list[str] = []

    def _lookup(self, username: str, realm: str, algorithm: str) -> str | None:
        return ha1(username, realm, self.password, algorithm) if username in self.users else None

    def respond(self, sent: Sent) -> Response:
        request = sent.request
        name = "Proxy-Authorization" if self.proxy else "Authorization"
        credentials = self.digest.find_credentials(header_lines(request, name))
        stale = False
        if credentials is not None:
            result = self.digest.verify(credentials, request.method, self._lookup)
            self.outcomes.append(result.outcome.value)
            if result.ok:
                response = request.response(200)
                expires = int(request.get("Expires") or "3600")
                granted = expires if self.grant is None or expires == 0 else min(self.grant, expires)
                if granted:
                    contact = request.contact[0].copy()
                    contact.params["expires"] = str(granted)
                    response.add("Contact", contact)
                sent.reply(response)
                return response
            stale = result.stale
        response = request.response(407 if self.proxy else 401)
        header = "Proxy-Authenticate" if self.proxy else "WWW-Authenticate"
        for value in self.digest.challenge(stale=stale):
            response.add(header, value)
        sent.reply(response)
        return response

    def serve(self, engine: FakeEngine, limit: int = 10) -> int:
        """Answer whatever REGISTERs are waiting, and those they lead to; how many."""
        count = 0
        while count < limit:
            pending = [s for s in engine.pending() if s.request.method == "REGISTER"]
            if not pending:
                return count
            for sent in pending:
                self.respond(sent)
                count += 1
        return count
