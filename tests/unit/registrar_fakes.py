"""Small fakes for registrar tests: an engine with a Clock, a transaction that keeps
what it is told, a leg that records what is done to it, and a phone that builds
REGISTERs and answers challenges."""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer

from phpvoip.config import Section
from phpvoip.events import CallEvents
from phpvoip.interfaces import ICallLeg, LegReply, LegState
from phpvoip.modules.registrar import Registrar, parse_settings
from phpvoip.sip.address import Address
from phpvoip.sip.digest import DigestClient
from phpvoip.sip.message import Request, Response, parse
from phpvoip.store.memory import MemoryStore

DOMAIN = "pbx.test"
PHONE = Address("udp", "192.0.2.10", 5060)
NAT = Address("udp", "198.51.100.7", 40123)  # where a phone behind NAT appears to be
_branches = itertools.count(1)


class FakeEngine:
    """What the registrar asks of the engine, with a Clock and a memory store."""

    def __init__(self, clock: Clock | None = None, store: Any = None, domain: str = DOMAIN) -> None:
        self.domain = domain
        self.clock = clock if clock is not None else Clock()
        self.store = store if store is not None else MemoryStore()
        self.inbound: list[Any] = []
        self.outbound: list[FakeLeg] = []
        self.events = CallEvents()  # what the registrar publishes

    def local_address(self, transport: str = "udp") -> Address:
        return Address(transport, "10.0.0.1", 5060)

    def inbound_leg(self, call: Any) -> FakeLeg:
        leg = FakeLeg("in")
        leg.call = call
        self.inbound.append(leg)
        return leg

    def outbound_leg(self, invite: Request, destination: Address, credentials: Any = None) -> FakeLeg:
        leg = FakeLeg("out")
        leg.invite = invite
        leg.destination = destination
        self.outbound.append(leg)
        return leg


class FakeTransaction:
    def __init__(self) -> None:
        self.responses: list[Response] = []

    def respond(self, response: Response) -> None:
        self.responses.append(response)


@implementer(ICallLeg)
class FakeLeg:
    """Records dial/hangup/request; tests make it report through `listener`."""

    _ids = itertools.count(1)

    def __init__(self, label: str = "leg") -> None:
        self.id = f"fake-{next(self._ids)}-{label}"
        self.state = LegState.IDLE
        self.listener: Any = None
        self.local_party: Any = None
        self.remote_party: Any = None
        self.remote_sdp: bytes | None = None
        self.offer: bytes | None = None
        self.max_forwards = 70
        self.dialled = 0
        self.hangups: list[Any] = []
        self.requests: list[tuple[Any, ...]] = []
        self.call: Any = None
        self.invite: Request | None = None
        self.destination: Address | None = None

    def dial(self) -> None:
        self.dialled += 1
        self.state = LegState.CALLING

    def progress(self, status: int, reason: str, sdp: bytes | None = None) -> None:
        raise AssertionError("not an inbound leg")

    def answer(self, sdp: bytes | None = None) -> None:
        raise AssertionError("not an inbound leg")

    def reject(self, status: int, reason: str, headers: Any = ()) -> None:
        raise AssertionError("not an inbound leg")

    def hangup(self, cause: Any) -> None:
        self.hangups.append(cause)
        self.state = LegState.TERMINATED

    def acknowledge(self, sdp: bytes | None) -> None:
        self.requests.append(("ACK", sdp, None))

    def request(self, method: str, body: bytes, content_type: Any, headers: Any = ()) -> defer.Deferred:
        self.requests.append((method, body, content_type))
        return defer.succeed(LegReply(200, "OK"))

    # what the far end does
    def ring(self, status: int = 180, sdp: bytes | None = None) -> None:
        self.listener.leg_progress(self, status, "Ringing" if status == 180 else "Progress", sdp)

    def answered(self, sdp: bytes | None = b"v=0 answer") -> None:
        self.state = LegState.ESTABLISHED
        self.listener.leg_answered(self, sdp)

    def failed(self, status: int, reason: str = "") -> None:
        self.state = LegState.TERMINATED
        self.listener.leg_failed(self, status, reason or str(status))


def registrar(yaml_section: dict | None = None, engine: FakeEngine | None = None,
              name: str = "registrar") -> tuple[Registrar, FakeEngine]:
    """A started registrar over a fake engine; users 1001/secret1 and
    1002/secret2 unless the section says otherwise; MD5 offered first."""
    data = {"users": {"1001": {"password": "secret1"}, "1002": {"password": "secret2"}},
            "algorithms": ["MD5", "SHA-256"]}
    data.update(yaml_section or {})
    settings = parse_settings(Section("test.yaml", "modules[0]", data))
    module = Registrar(name, settings)
    engine = engine if engine is not None else FakeEngine()
    d = module.start(engine)
    failures: list[Any] = []
    d.addErrback(failures.append)
    assert not failures, failures
    assert module.ready
    return module, engine


def message(lines: list[str]) -> Request:
    return parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())  # type: ignore[return-value]


class Phone:
    """Builds REGISTERs for one user (one Call-ID, CSeq counting up) and answers
    401s with a `DigestClient`."""

    def __init__(self, user: str, password: str, host: str = DOMAIN, call_id: str | None = None,
                 source: Address = PHONE) -> None:
        self.user = user
        self.host = host
        self.call_id = call_id or f"reg-{user}-{next(_branches)}@192.0.2.10"
        self.cseq = 0
        self.client = DigestClient(user, password)
        self.source = source
        self.authorization: str | None = None

    def request(
        self,
        contacts: list[str] | None = None,
        expires: int | None = None,
        to_user: str | None = None,
        authorization: str | None = None,
        cseq: int | None = None,
        request_host: str | None = None,
        extra: list[str] = (),
    ) -> Request:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        lines = [
            f"REGISTER sip:{request_host or self.host} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.source.host}:{self.source.port};branch=z9hG4bK{next(_branches)};rport",
            f"From: <sip:{self.user}@{self.host}>;tag=from{self.user}",
            f"To: <sip:{to_user or self.user}@{self.host}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} REGISTER",
            "Max-Forwards: 70",
        ]
        for contact in contacts or []:
            lines.append(f"Contact: {contact}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines.extend(extra)
        return message(lines)

    def register(self, module: Registrar, contacts: list[str] | None = None, expires: int | None = None,
                 **kwargs: Any) -> Response:
        """Send a REGISTER; answer a 401 once; return the final response."""
        request = self.request(contacts, expires, authorization=self._answer(), **kwargs)
        response = module.register(request, self.source)
        if response.status == 401:
            challenges = header_values(response, "WWW-Authenticate")
            self.client.update(challenges)
            request = self.request(contacts, expires, authorization=self._answer(), **kwargs)
            response = module.register(request, self.source)
        return response

    def _answer(self) -> str | None:
        if self.client.challenge is None:
            return None
        return self.client.authorization("REGISTER", f"sip:{self.host}")


def contacts_of(response: Response) -> dict[str, dict[str, str | None]]:
    """Contact URI text → its header parameters, from a 200."""
    return {str(c.uri): dict(c.params) for c in response.contact}


def header_values(response: Response, name: str) -> list[str]:
    return [v for n, v in response.headers() if n.lower() == name.lower()]
