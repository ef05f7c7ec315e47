"""Who a console request comes from, when a reverse proxy stands in front.

The console speaks plain HTTP; an operator who wants TLS, or one address for many
services, puts nginx or similar in front of it. Then every request comes from the
proxy's address, so the login throttle would put every user in one bucket and the
log would name the proxy. With ``trusted_proxies`` (addresses or networks), a
request from one of them is taken to be from the address the proxies recorded in
``X-Forwarded-For``: read from the right, the first hop that is not itself a
trusted proxy (hops further left were written by the client and prove nothing).
``X-Forwarded-Proto: https`` from a trusted proxy marks the session cookie Secure.
A request from any other address is taken as it comes: its headers are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

__all__ = ["Client", "client_of"]

Network = IPv4Network | IPv6Network


@dataclass(frozen=True)
class Client:
    """The client's address ("" when not IP) and whether it reached us over HTTPS."""

    address: str
    secure: bool = False


def _address(text: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: IPv4Address | IPv6Address | None, proxies: Iterable[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_of(request: Any, proxies: tuple[Network, ...]) -> Client:
    """The client of a twisted.web `request`, through the `proxies` trusted."""
    peer = str(getattr(request.getClientAddress(), "host", ""))
    if not proxies or not _trusted(_address(peer), proxies):
        return Client(peer)
    hops = [hop for header in request.requestHeaders.getRawHeaders(b"x-forwarded-for", [])
            for hop in header.decode("latin-1").split(",")]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # not an address: what is left of it cannot be read either
        client = str(address)
        if not _trusted(address, proxies):
            break
    protos = request.requestHeaders.getRawHeaders(b"x-forwarded-proto", [])
    last = protos[-1].decode("latin-1").split(",")[-1].strip().lower() if protos else ""
    return Client(client, last == "https")
