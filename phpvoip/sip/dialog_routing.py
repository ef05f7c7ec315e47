"""Where an in-dialog request goes: Request-URI and Route (RFC 3261 §12.2.1.1, §16.12.1.2)
and the next hop taken from them (§8.1.2, RFC 3263 §4 without DNS).

Names are not resolved here: a `Hop` whose host is a name is for the caller to resolve
(RFC 3263 SRV and A lookups belong to the transport side, which may block or wait).
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from phpvoip.sip.address import Address
from phpvoip.sip.errors import ProtocolError
from phpvoip.sip.headers import NameAddr
from phpvoip.sip.message import Request
from phpvoip.sip.uri import URI

__all__ = ["Hop", "next_hop", "request_target", "uri_hop"]

# §19.1.1, table 1: the `method` parameter and URI headers may not appear in a
# Request-URI, so a strict router's URI loses them when it becomes one (§12.2.1.1).
_NOT_IN_REQUEST_URI = ("method",)


class Hop(NamedTuple):
    """The next hop of a request: `host` (a name or an IP literal, IPv6 without
    brackets), `port` (the default when the URI had none) and `transport`
    (``udp``, ``tcp`` or ``tls``, lower case)."""

    host: str
    port: int
    transport: str

    def address(self) -> Address | None:
        """The hop as an `Address` when its host is an IP literal, else None (a name
        that the caller must resolve first)."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return None
        return Address(self.transport, self.host, self.port)


def uri_hop(uri: URI) -> Hop:
    """Host, port and transport for sending to `uri` (RFC 3263 §4.1, §4.2 without DNS).

    `maddr` overrides the host (§19.1.1); the `transport` parameter wins; else UDP
    for ``sip:`` and TLS for ``sips:``; the port defaults to 5060, or 5061 for TLS.
    A name without a port would need an SRV lookup (RFC 3263 §4.2): the caller does
    that, this function answers with the default port."""
    if not uri.is_sip:
        raise ProtocolError(f"cannot send a request to {uri}", 416)
    host = uri.params.get("maddr") or uri.host
    if host.startswith("["):
        host = host[1:-1]
    transport = uri.transport
    if uri.scheme == "sips":
        # A SIPS URI means TLS over TCP on every hop (§26.2.2).
        transport = "tls"
    elif transport is None:
        transport = "udp"
    port = uri.port
    if port is None:
        port = 5061 if transport == "tls" else 5060
    return Hop(host, port, transport)


def next_hop(request: Request) -> Hop:
    """Where to send `request` (§8.1.2): the top Route when it is a loose router
    (``;lr``), otherwise the Request-URI, which holds the strict router a dialog put
    there (§12.2.1.1) or the target itself when there is no Route.

    A request cannot show that its route set began with a strict router followed by
    a loose one; `Dialog.next_hop()` knows its route set and is exact."""
    routes = request.route
    if routes and "lr" in routes[0].uri.params:
        return uri_hop(routes[0].uri)
    return uri_hop(request.uri)


def request_target(remote_target: URI, route_set: list[NameAddr]) -> tuple[URI, list[NameAddr]]:
    """The Request-URI and Route values of a request sent within a dialog (§12.2.1.1).

    - empty route set: the remote target, no Route;
    - first route a loose router (``;lr``): the remote target, the whole route set;
    - first route a strict router: that route's URI (minus what a Request-URI may not
      carry) as Request-URI, then the rest of the route set and the remote target as
      the last Route (so the strict router can restore it).
    """
    if not route_set:
        return remote_target.copy(), []
    first = route_set[0]
    if "lr" in first.uri.params:
        return remote_target.copy(), [route.copy() for route in route_set]
    uri = first.uri.copy()
    for name in _NOT_IN_REQUEST_URI:
        uri.params.pop(name, None)
    uri.headers = None
    routes = [route.copy() for route in route_set[1:]]
    routes.append(NameAddr(remote_target.copy()))
    return uri, routes
