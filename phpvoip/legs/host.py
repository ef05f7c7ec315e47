"""The leg host: all that SIP legs may use of the switch (`ILegHost`).

It owns the registry that routes in-dialog requests to their leg (dialog -> leg) and
the INVITE transactions still waiting for an answer (so that a CANCEL reaches the
leg), and it sends through the transaction layer. The engine dispatches with it; the
legs are given it instead of the engine, so a leg cannot reach modules, the router or
other calls.
"""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from phpvoip.interfaces import ILegHost
from phpvoip.sip.address import Address
from phpvoip.sip.dialog import Dialog, DialogTable
from phpvoip.sip.headers import NameAddr
from phpvoip.sip.ids import new_call_id
from phpvoip.sip.message import Request, Response
from phpvoip.sip.timers import Timers

__all__ = ["LegHost"]


@implementer(ILegHost)
class LegHost:
    """Sends for legs and remembers which leg owns which dialog and INVITE."""

    def __init__(self, transport: Any, layer: Any, clock: Any, timers: Timers, domain: str,
                 keepalive_interval: float, allow: str, supported: str, user_agent: str) -> None:
        self.transport = transport
        self.layer = layer
        self.clock = clock
        self.timers = timers
        self.domain = domain
        self.keepalive_interval = keepalive_interval
        self.allow = allow
        self.supported = supported
        self.user_agent = user_agent
        self.dialogs = DialogTable()
        self.owners: dict[Any, Any] = {}  # DialogId -> leg
        self.waiting: dict[Any, Any] = {}  # INVITE server transaction -> inbound leg or IncomingCall
        self.live_legs = 0

    # -- addresses and headers ------------------------------------------------------

    def local_address(self, transport: str = "udp") -> Address:
        addresses = self.transport.local_addresses()
        for address in addresses:
            if address.transport == transport:
                return address
        if addresses:
            return addresses[0]
        return Address(transport, self.domain, 5060)

    def new_call_id(self) -> str:
        return new_call_id(self.local_address().host)

    def add_contact(self, message: Request | Response, transport: str, party: NameAddr | None) -> None:
        local = self.local_address(transport)
        user = party.uri.user if party is not None and party.uri.is_sip else None
        host = f"[{local.host}]" if ":" in local.host else local.host
        params = ";transport=tcp" if local.transport == "tcp" else ""
        user_part = f"{user}@" if user else ""
        message.set("Contact", f"<sip:{user_part}{host}:{local.port}{params}>")

    def add_capabilities(self, message: Request | Response) -> None:
        message.set("Allow", self.allow)
        if self.supported:
            message.set("Supported", self.supported)
        if self.user_agent:  # empty: the switch does not name its software
            message.set("User-Agent" if isinstance(message, Request) else "Server", self.user_agent)

    # -- sending --------------------------------------------------------------------------

    def start_transaction(self, request: Request, destination: Address, on_response: Any) -> Any:
        return self.layer.send_request(request, destination, on_response)

    def send_direct(self, message: Request | Response, destination: Address) -> None:
        self.transport.send(message, destination)

    # -- the registry -------------------------------------------------------------------------

    def dialog_started(self, dialog: Dialog, leg: Any) -> None:
        key = dialog.id
        self.dialogs.add(dialog)
        self.owners[key] = leg
        dialog.when_terminated(lambda d: self.owners.pop(key, None))

    def dialog_owner(self, dialog: Dialog) -> Any:
        return self.owners.get(dialog.id)

    def owner_of(self, request: Request) -> Any:
        """The leg owning the dialog `request` belongs to, or None."""
        dialog = self.dialogs.match(request)
        return None if dialog is None else self.owners.get(dialog.id)

    def ringing(self, leg: Any) -> None:
        transaction = getattr(leg, "transaction", None)
        if transaction is not None:
            self.waiting[transaction] = leg

    def settled(self, leg: Any) -> None:
        transaction = getattr(leg, "transaction", None)
        if transaction is not None:
            self.waiting.pop(transaction, None)

    def leg_started(self) -> None:
        self.live_legs += 1

    def leg_finished(self, leg: Any) -> None:
        self.live_legs -= 1
        self.settled(leg)
