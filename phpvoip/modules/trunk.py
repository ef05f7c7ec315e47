"""SipTrunk: an IP-authenticated peer (another PBX, a gateway, a carrier's SBC).

No registration either way: calls *in* are taken from the allowed source addresses,
calls *out* go to the trunk's address when the routed number matches its patterns.
A trunk may be bound to a virtual number; when the router has rewritten From to that
number, the call goes out with the original caller's From again (the seed's "peer
trunk" rule, DESIGN.md §1 "Outgoing line translation").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from phpvoip.interfaces import IModule, IncomingCall, NotMine
from phpvoip.router import Pattern
from phpvoip.settings import Section
from phpvoip.sip.address import Address
from phpvoip.sip.headers import NameAddr
from phpvoip.sip.message import Request
from phpvoip.sip.uri import URI

__all__ = ["Trunk", "TrunkSettings"]


@dataclass(frozen=True)
class TrunkSettings:
    address: Address
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    numbers: Pattern
    number: str | None = None  # the trunk's virtual number, if it has one
    strip: int = 0  # leading digits removed from the number on the way out
    prefix: str = ""  # digits put in front of it after stripping
    domain: str | None = None  # host part of To/Request-URI on the way out
    weight: int = 50


def parse_settings(section: Section) -> TrunkSettings:
    address = section.peer_address("address")
    allow = []
    for i, text in enumerate(section.strings("allow", [address.host])):
        try:
            allow.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise section.error(f"allow[{i}]", f"{text!r} is not an address or network") from None
    numbers_text = ",".join(section.strings("numbers", ["*"]))
    try:
        numbers = Pattern(numbers_text)
    except ValueError as e:
        raise section.error("numbers", str(e)) from None
    return TrunkSettings(
        address=address,
        allow=tuple(allow),
        numbers=numbers,
        number=section.string("number", None),
        strip=section.integer("strip", 0, minimum=0),
        prefix=section.string("prefix", ""),
        domain=section.string("domain", None),
        weight=section.integer("weight", 50),
    )


@implementer(IModule)
class Trunk:
    """Takes calls from its peer's addresses and carries routed calls to it."""

    def __init__(self, name: str, settings: TrunkSettings) -> None:
        self.name = name
        self.settings = settings
        self.weight = settings.weight
        self.engine: Any = None

    def __repr__(self) -> str:
        return f"<Trunk {self.name} {self.settings.address}>"

    def start(self, engine: Any) -> None:
        self.engine = engine

    def stop(self) -> None:
        pass

    def reconfigure(self, settings: TrunkSettings) -> bool:
        """Apply new settings in place (a reload): a trunk reads them per call."""
        self.settings, self.weight = settings, settings.weight
        return True

    def request(self, request: Any, transaction: Any, source: Any) -> bool:
        raise NotMine()

    def allows(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(ip in network for network in self.settings.allow)

    def callin(self, call: IncomingCall) -> Any:
        source = call.source
        if source is None or not self.allows(source.host):
            raise NotMine()
        return self.engine.inbound_leg(call)

    def outgoing_number(self, number: str) -> str:
        return self.settings.prefix + number[self.settings.strip :]

    def callout(self, invite: Request, call: IncomingCall) -> Any:
        to_user = invite.to.uri.user or ""
        if not self.settings.numbers.matches(to_user):
            raise NotMine()
        settings = self.settings
        host = settings.domain or settings.address.host
        port = None if settings.domain else settings.address.port
        number = self.outgoing_number(to_user)
        caller = invite.from_
        original = call.invite.from_  # type: ignore[attr-defined]
        if settings.number is not None and caller.uri.user == settings.number:
            # The router put our virtual number in From: the peer sees the real caller.
            caller = original
        request = Request("INVITE", URI("sip", number, host, port))
        request.add("From", NameAddr(URI("sip", caller.uri.user, self.engine.domain), caller.display))
        request.add("To", NameAddr(URI("sip", number, host, port), invite.to.display))
        referred_by = invite.get("Referred-By")
        if referred_by:
            request.add("Referred-By", referred_by)  # a transfer's target learns who sent it (RFC 3892)
        return self.engine.outbound_leg(request, settings.address)

    def explain_callout(self, invite: Request) -> str | None:
        """For the manhole's route(): whether `callout` takes `invite` and why."""
        to_user = invite.to.uri.user or ""
        if not self.settings.numbers.matches(to_user):
            return None
        return (f"number {to_user} matches numbers {self.settings.numbers.text!r}: sent to "
                f"{self.settings.address} as {self.outgoing_number(to_user)}")
