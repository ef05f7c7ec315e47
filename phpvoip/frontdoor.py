"""The stateless front door: what the switch answers before (and beneath) the engine.

It sits where the transaction layer will sit, as the transport's sink, and answers
every request statelessly (RFC 3261 §8.2.7): OPTIONS addressed to the switch gets
200 with its capabilities (§11.2); requests that fail the §8.2 checks get what
`phpvoip.sip.uas.check_request` says; everything else gets an honest refusal. It
keeps no state, so a retransmitted request simply gets the same answer again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from twisted.logger import Logger

from phpvoip.sip.address import Address
from phpvoip.sip.message import Request, Response
from phpvoip.sip.uas import allow_value, check_request, is_local_uri, request_tag

__all__ = ["FRONT_DOOR_METHODS", "FrontDoor"]

log = Logger()

# What the front door itself handles: OPTIONS answered, CANCEL answered 481 (there
# is never a transaction to cancel), ACK absorbed.
FRONT_DOOR_METHODS = ("ACK", "CANCEL", "OPTIONS")


class FrontDoor:
    """Answers requests statelessly through `transport` (its ``send_response``).

    `domain` and `addresses` (host names or IPs, or `Address` values) say which
    Request-URI hosts are the switch itself; the transport's `local_addresses()`
    count too. `allowed_methods` go into Allow; `supported` option tags into
    Supported (and pass Require); `accept` into Accept; `server` into the Server
    header of the OPTIONS answer (empty: none, so a scanner such as svmap learns
    nothing of the software). `registrar` says whether the switch has a registrar
    at all (asked when a REGISTER that no module took gets here).
    """

    def __init__(
        self,
        transport: Any,
        domain: str,
        addresses: Iterable[str | Address] = (),
        *,
        allowed_methods: Iterable[str] = FRONT_DOOR_METHODS,
        supported: Iterable[str] = (),
        accept: Iterable[str] = ("application/sdp",),
        server: str = "",
        registrar: Callable[[], bool] | None = None,
    ) -> None:
        self.transport = transport
        self.domain = domain
        self.hosts = [domain] + [a.host if isinstance(a, Address) else a for a in addresses]
        self.allowed_methods = tuple(allowed_methods)
        self.supported = tuple(supported)
        self.accept = tuple(accept)
        self.server = server
        self.registrar = registrar

    def is_local(self, request: Request) -> bool:
        """Whether the Request-URI names the switch (its domain or an address)."""
        hosts = self.hosts
        local_addresses = getattr(self.transport, "local_addresses", None)
        if local_addresses is not None:
            hosts = hosts + [a.host for a in local_addresses()]
        return is_local_uri(request.uri, hosts)

    def message_received(self, message: Request | Response, source: Address) -> None:
        """Answer a request; responses are to nothing we sent, so they are dropped."""
        if isinstance(message, Response):
            log.debug("dropped a response to nothing: {message!r} from {source}", message=message,
                      source=source)
            return
        answer = self.answer(message)
        if answer is not None:
            self.transport.send_response(answer, source)

    def answer(self, request: Request) -> Response | None:
        """The stateless answer to `request`, or None (for ACK)."""
        method = request.method
        if method == "ACK":
            return None  # never answered (§17.2.1); there is no 2xx of ours to ACK
        local = method == "OPTIONS" and self.is_local(request)
        tag = request_tag(request)
        refusal = check_request(
            request, allowed_methods=self.allowed_methods, supported=self.supported, local=local, to_tag=tag
        )
        if refusal is not None:
            return refusal
        if request.to.tag is not None or method == "CANCEL":
            # §12.2.2: a request inside a dialog the UAS does not know → 481, and
            # §9.2: a CANCEL that matches no transaction → 481. Stateless, we know none.
            return request.response(481, None, tag)
        if method == "OPTIONS":
            if not local:
                # §8.2.2.1: a Request-URI "that the UAS is not willing to accept
                # requests for" → 404. The front door relays nothing.
                return request.response(404, None, tag)
            return self.options_response(request, tag)
        if method == "REGISTER" and self.registrar is not None and self.registrar():
            # §10.3 step 1: a registrar without bindings for the Request-URI's
            # domain that is no proxy refuses; the switch does register users, so
            # 501 would be untrue (RFC 4475's REGISTERs are for example.com).
            return request.response(403, "Domain Not Served", tag)
        # A method configured as allowed that the front door itself cannot serve
        # (REGISTER when no registrar is configured: the switch does not register).
        return request.response(501, None, tag)

    def options_response(self, request: Request, tag: str | None = None) -> Response:
        """200 to an OPTIONS for the switch, with the header fields §11.2 says
        "SHOULD be present": Allow, Accept, Accept-Encoding, Accept-Language,
        Supported."""
        response = request.response(200, None, tag if tag is not None else request_tag(request))
        response.add("Allow", allow_value(self.allowed_methods))
        response.add("Accept", ", ".join(self.accept))
        response.add("Accept-Encoding", "identity")
        response.add("Accept-Language", "en")
        response.add("Supported", ", ".join(self.supported))
        if self.server:
            response.add("Server", self.server)
        return response

    def transport_error(self, address: Address) -> None:
        """Stateless: nothing waits on a destination, so a failure only gets noted."""
        log.debug("transport error towards {address}", address=address)
