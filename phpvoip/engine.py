"""The switch: dispatch every request, and run INVITEs through callin → route → callout.

The engine is the transaction user of `phpvoip.sip.transaction.TransactionLayer`
(DESIGN.md §1, seed "engine logic for INVITE"):

- a request inside a dialog goes to the leg that owns the dialog (481 if none);
- an out-of-dialog request other than INVITE goes to the modules in order, and
  gets the front door's stateless answer if none takes it;
- an INVITE gets 100 Trying at once; From == To → 400; `callin()` over the modules
  finds the caller's module (none → 403); the router rewrites the request;
  `callout()` finds the destination's module (none → 404); a `Bridge` owns both
  legs from then on.

Modules are asked in order of weight, highest first; a module declines with
`NotMine` and refuses with `CallRejected`. Nothing here blocks: a module may answer
with a Deferred and the engine carries on when it fires.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip import __version__
from phpvoip.bridge import Bridge, CallRecord
from phpvoip.config import CallSettings
from phpvoip.frontdoor import FrontDoor
from phpvoip.interfaces import (
    NORMAL_CLEARING,
    CallRejected,
    Cause,
    IEngine,
    IModule,
    IncomingCall,
    IRouter,
    NotMine,
)
from phpvoip.legs.local import local_pair
from phpvoip.legs.sip import InboundLeg, OutboundLeg
from phpvoip.router import Router
from phpvoip.sip.address import Address
from phpvoip.sip.dialog import Dialog, DialogTable, no_such_dialog
from phpvoip.sip.headers import NameAddr, Via
from phpvoip.sip.ids import new_branch, new_call_id
from phpvoip.sip.message import Request, Response
from phpvoip.sip.timers import Timers
from phpvoip.sip.transaction import ServerTransaction, TransactionLayer
from phpvoip.sip.uas import accepts, check_request, request_tag

__all__ = ["ALLOWED_METHODS", "Engine"]

log = Logger()

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "MESSAGE", "REGISTER")
SUPPORTED: tuple[str, ...] = ()
_ALLOW = ", ".join(ALLOWED_METHODS)
RECORDS_KEPT = 1000
DEFAULT_TIMERS = Timers()
DEFAULT_CALL_SETTINGS = CallSettings()
_call_numbers = itertools.count(1)


@implementer(IEngine)
class Engine:
    """The transaction user that turns SIP into calls between modules."""

    def __init__(
        self,
        transport: Any,
        clock: Any,
        domain: str,
        modules: Iterable[Any] = (),
        router: IRouter | None = None,
        timers: Timers = DEFAULT_TIMERS,
        call_settings: CallSettings = DEFAULT_CALL_SETTINGS,
        store: Any = None,
        user_agent: str = "phpvoip",
    ) -> None:
        self.transport = transport
        self.clock = clock
        self.domain = domain
        self.timers = timers
        self.call_settings = call_settings
        self.store = store
        self.user_agent = f"{user_agent}/{__version__}" if user_agent == "phpvoip" else user_agent
        self.router: IRouter = router if router is not None else Router()
        self.modules = sorted(modules, key=lambda m: -m.weight)
        self.layer = TransactionLayer(clock, transport.send, self, timers)
        self.dialogs = DialogTable()
        self.front_door = FrontDoor(
            transport, domain, allowed_methods=ALLOWED_METHODS, supported=SUPPORTED
        )
        self.calls: dict[str, Bridge] = {}
        self.records: deque[CallRecord] = deque(maxlen=RECORDS_KEPT)
        self._owners: dict[Any, Any] = {}  # DialogId -> leg
        self._ringing: dict[ServerTransaction, Any] = {}  # INVITE transaction -> inbound leg / call
        self._legs = 0

    def __repr__(self) -> str:
        return f"<Engine {self.domain} calls={len(self.calls)}>"

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> defer.Deferred:
        return defer.gatherResults(
            [defer.maybeDeferred(m.start, self) for m in self.modules], consumeErrors=True
        )

    def stop(self) -> defer.Deferred:
        for bridge in list(self.calls.values()):
            bridge.hangup(Cause(503, "Switch shutting down", "local"))
        return defer.gatherResults([defer.maybeDeferred(m.stop) for m in self.modules], consumeErrors=True)

    def counts(self) -> dict[str, int]:
        """Live objects, for the manhole and metrics: returns to zero when idle."""
        transactions = self.layer.counts()
        return {
            "calls": len(self.calls),
            "legs": self._legs,
            "dialogs": len(self.dialogs),
            "client_transactions": transactions["client"],
            "server_transactions": transactions["server"],
        }

    # -- what legs and modules use (IEngine) --------------------------------------------------

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

    def send_direct(self, message: Request | Response, address: Address) -> None:
        """Outside any transaction: ACKs for 2xx and 2xx retransmissions."""
        self.transport.send(message, address)

    def add_contact(self, message: Request | Response, transport: str, party: NameAddr | None) -> None:
        local = self.local_address(transport)
        user = party.uri.user if party is not None and party.uri.is_sip else None
        host = f"[{local.host}]" if ":" in local.host else local.host
        params = ";transport=tcp" if local.transport == "tcp" else ""
        user_part = f"{user}@" if user else ""
        message.set("Contact", f"<sip:{user_part}{host}:{local.port}{params}>")

    def add_capabilities(self, message: Request | Response) -> None:
        message.set("Allow", _ALLOW)
        if SUPPORTED:
            message.set("Supported", ", ".join(SUPPORTED))
        message.set("User-Agent" if isinstance(message, Request) else "Server", self.user_agent)

    def inbound_leg(self, call: IncomingCall) -> InboundLeg:
        self._legs += 1
        return InboundLeg(self, call)

    def outbound_leg(self, invite: Request, destination: Address, credentials: Any = None) -> OutboundLeg:
        self._legs += 1
        return OutboundLeg(self, invite, destination, credentials)

    def local_pair(self) -> tuple[Any, Any]:
        return local_pair()

    def send_request(self, request: Request, destination: Address) -> defer.Deferred:
        """An out-of-dialog request of a module's (REGISTER, OPTIONS): the engine
        adds the top Via and fires with the final response (a local 408 or 503 on
        timeout or transport failure)."""
        local = self.local_address(destination.transport)
        via = Via(local.transport.upper(), local.host, local.port, {"branch": new_branch(), "rport": None})
        request.add("Via", via, first=True)
        if not request.has("Max-Forwards"):
            request.add("Max-Forwards", 70)
        if not request.has("User-Agent"):
            request.add("User-Agent", self.user_agent)
        d: defer.Deferred = defer.Deferred()

        def answered(response: Response) -> None:
            if response.status >= 200 and not d.called:
                d.callback(response)

        self.layer.send_request(request, destination, answered)
        return d

    # -- bookkeeping legs report ------------------------------------------------------------

    def inbound_started(self, leg: InboundLeg) -> None:
        if leg.transaction is not None:
            self._ringing[leg.transaction] = leg

    def inbound_settled(self, leg: InboundLeg) -> None:
        if leg.transaction is not None:
            self._ringing.pop(leg.transaction, None)

    def dialog_started(self, dialog: Dialog, leg: Any) -> None:
        key = dialog.id
        self.dialogs.add(dialog)
        self._owners[key] = leg
        dialog.when_terminated(lambda d: self._owners.pop(key, None))

    def dialog_owner(self, dialog: Dialog) -> Any:
        return self._owners.get(dialog.id)

    def leg_finished(self, leg: Any) -> None:
        self._legs -= 1
        if getattr(leg, "transaction", None) is not None:
            self._ringing.pop(leg.transaction, None)

    # -- the transaction user -------------------------------------------------------------------

    def request_received(self, request: Request, transaction: ServerTransaction) -> None:
        method = request.method
        # An INVITE is the one request the switch passes on, so it alone counts
        # hops (§16.3 step 3); everything else ends here.
        refusal = check_request(
            request, allowed_methods=ALLOWED_METHODS, supported=SUPPORTED, local=method != "INVITE"
        )
        if refusal is not None:
            transaction.respond(refusal)
            return
        if request.to.tag is not None and method != "REGISTER":
            # REGISTER never belongs to a dialog (§10.2); a To tag on it is noise.
            self._in_dialog(request, transaction)
        elif method == "INVITE":
            self._new_call(request, transaction)
        else:
            self._out_of_dialog(request, transaction)

    def ack_received(self, ack: Request, source: Address) -> None:
        dialog = self.dialogs.match(ack)
        if dialog is None:
            log.debug("ACK for no dialog dropped", callID=ack.call_id)
            return
        leg = self._owners.get(dialog.id)
        if leg is not None:
            leg.ack_received(ack)
        else:
            dialog.receive_request(ack)

    def cancel_received(self, cancel: Request, invite_transaction: ServerTransaction) -> None:
        pending = self._ringing.pop(invite_transaction, None)
        if isinstance(pending, InboundLeg):
            pending.cancelled(cancel)
        elif isinstance(pending, IncomingCall):
            pending.attributes["cancelled"] = True

    def response_received(self, response: Response, source: Address) -> None:
        """A response no transaction wanted: a 2xx retransmitted after the INVITE
        transaction ended gets its ACK again (§13.2.2.4)."""
        if 200 <= response.status < 300 and response.cseq.method == "INVITE":
            dialog = self.dialogs.find(response.call_id, response.from_.tag or "", response.to.tag)
            if dialog is not None:
                dialog.on_2xx_retransmission(response)

    # -- dispatch ----------------------------------------------------------------------------------

    def _in_dialog(self, request: Request, transaction: ServerTransaction) -> None:
        dialog = self.dialogs.match(request)
        leg = self._owners.get(dialog.id) if dialog is not None else None
        if leg is None:
            transaction.respond(no_such_dialog(request))
            return
        leg.request_received(request, transaction)

    def _out_of_dialog(self, request: Request, transaction: ServerTransaction) -> None:
        d = self._ask("request", request, transaction, transaction.source)

        def nobody(failure: Failure) -> None:
            failure.trap(NotMine)
            answer = self.front_door.answer(request)
            if answer is not None:
                self._respond(transaction, answer)

        d.addErrback(nobody)
        d.addErrback(self._module_bug, transaction, request)

    def _new_call(self, invite: Request, transaction: ServerTransaction) -> None:
        transaction.respond(invite.response(100))
        call = IncomingCall(invite, transaction.source, transaction, invite.call_id)
        if _same_party(invite):
            self._refuse(call, 400, "From and To are the same")
            return
        if not accepts(invite, "application/sdp"):
            # RFC 4475 §3.3.15: our answer would carry SDP, which the caller
            # says it cannot take.
            self._refuse(call, 406, None, (("Accept", "application/sdp"),))
            return
        self._ringing[transaction] = call
        self._run_call(call)

    def place_call(self, invite: Request) -> defer.Deferred:
        """An application's INVITE, run through the same flow as one from the
        network. Fires with the call's id once both legs are bridged."""
        call = IncomingCall(invite, None, None, invite.call_id)
        return self._run_call(call)

    def _run_call(self, call: IncomingCall) -> defer.Deferred:
        invite: Request = call.invite  # type: ignore[assignment]
        legs: dict[str, Any] = {}

        def got_inbound(answer: tuple[Any, str]) -> defer.Deferred:
            leg, legs["in_module"] = answer
            legs["in"] = leg
            if call.attributes.get("cancelled"):
                _abandon(leg)
                raise _Abandoned()
            routed = self.router.route(invite)
            return self._ask("callout", routed, call).addCallback(got_outbound, routed)

        def got_outbound(answer: tuple[Any, str], routed: Request) -> str:
            leg, out_module = answer
            inbound = legs["in"]
            if call.attributes.get("cancelled") or inbound.state == "terminated":
                _abandon(inbound)
                leg.hangup(Cause(487, "Caller cancelled", "remote"))
                raise _Abandoned()
            max_forwards = invite.max_forwards
            if hasattr(leg, "max_forwards") and max_forwards is not None:
                leg.max_forwards = max(max_forwards - 1, 0)
            return self._bridge(call, inbound, leg, routed, legs["in_module"], out_module)

        def failed(failure: Failure) -> None:
            if failure.check(_Abandoned):
                return None
            status, reason, headers = 500, None, ()
            if failure.check(NotMine):
                status = 404 if "in" in legs else 403
            elif failure.check(CallRejected):
                rejected = failure.value
                status, reason, headers = rejected.status, rejected.reason, rejected.headers
            else:
                log.failure("call {callID} failed in a module", failure, callID=call.call_id)
            inbound = legs.get("in")
            if inbound is not None:
                inbound.reject(status, reason, headers)
            else:
                self._refuse(call, status, reason, headers)
            return failure if call.transaction is None else None

        d = self._ask("callin", call)
        d.addCallback(got_inbound)
        d.addErrback(failed)
        return d

    def _bridge(self, call: IncomingCall, inbound: Any, outbound: Any, routed: Request,
                in_module: str, out_module: str) -> str:
        invite: Request = call.invite  # type: ignore[assignment]
        record = CallRecord(
            id=f"call-{next(_call_numbers)}",
            call_id=invite.call_id,
            caller=invite.from_.uri.user or "",
            callee=invite.to.uri.user or "",
            routed_from=routed.from_.uri.user or "",
            routed_to=routed.to.uri.user or "",
            inbound_module=in_module,
            outbound_module=out_module,
            start=self.clock.seconds(),
        )
        settings = self.call_settings
        bridge = Bridge(record, inbound, outbound, self.clock, settings.ring_timeout, settings.max_duration,
                        self._call_ended)
        self.calls[record.id] = bridge
        bridge.start()
        return record.id

    def _call_ended(self, bridge: Bridge) -> None:
        self.calls.pop(bridge.record.id, None)
        self.records.append(bridge.record)

    def hangup_all(self, cause: Cause = NORMAL_CLEARING) -> None:
        for bridge in list(self.calls.values()):
            bridge.hangup(cause)

    # -- asking modules ------------------------------------------------------------------------

    def _ask(self, method: str, *args: Any) -> defer.Deferred:
        """Ask the modules in turn until one takes what it is asked; fires with
        ``(answer, module name)``. `NotMine` and non-final refusals pass to the
        next module; if nobody takes it, the first non-final refusal is the
        answer, else `NotMine`."""
        modules = iter(self.modules)
        deferred_refusal: list[CallRejected] = []

        def declined(failure: Failure) -> Any:
            failure.trap(NotMine, CallRejected)
            refusal = failure.value
            if isinstance(refusal, CallRejected):
                if refusal.final:
                    return failure
                deferred_refusal.append(refusal)
            return next_module()

        def next_module() -> Any:
            for module in modules:
                try:
                    result = getattr(module, method)(*args)
                except NotMine:
                    continue
                except CallRejected as refusal:
                    if refusal.final:
                        return defer.fail()
                    deferred_refusal.append(refusal)
                    continue
                except Exception:
                    return defer.fail()
                if isinstance(result, defer.Deferred):
                    return result.addCallback(lambda r, name=module.name: (r, name)).addErrback(declined)
                return defer.succeed((result, module.name))
            if deferred_refusal:
                return defer.fail(deferred_refusal[0])
            return defer.fail(NotMine())

        return next_module()

    def _refuse(self, call: IncomingCall, status: int, reason: str | None, headers: Any = ()) -> None:
        transaction = call.transaction
        if transaction is None:
            return
        self._ringing.pop(transaction, None)
        if call.attributes.get("cancelled"):
            return
        invite: Request = call.invite  # type: ignore[assignment]
        response = invite.response(status, reason, to_tag=request_tag(invite))
        for name, value in headers:
            response.add(name, value)
        self._respond(transaction, response)

    def _respond(self, transaction: ServerTransaction, response: Response) -> None:
        try:
            transaction.respond(response)
        except Exception:
            log.failure("could not answer {callID}", callID=response.call_id)

    def _module_bug(self, failure: Failure, transaction: ServerTransaction, request: Request) -> None:
        log.failure("module failed on {method}", failure, method=request.method, callID=request.call_id)
        if not transaction.terminated and transaction.last_response is None:
            self._respond(transaction, request.response(500, None, request_tag(request)))


class _Abandoned(Exception):
    """The caller went away while modules were still deciding."""


def _abandon(leg: Any) -> None:
    """End a leg whose caller cancelled while modules decided (the transaction
    layer has answered the INVITE 487 already)."""
    if isinstance(leg, InboundLeg):
        leg.cancelled(None)
    else:
        leg.hangup(Cause(487, "Caller cancelled", "remote"))


def _same_party(invite: Request) -> bool:
    """DESIGN.md §1: an INVITE whose From and To name the same user is refused."""
    caller, callee = invite.from_.uri, invite.to.uri
    return bool(caller.user) and caller.user == callee.user and caller.host.lower() == callee.host.lower()


def verify_modules(modules: Iterable[Any]) -> None:
    """Refuse objects that do not provide IModule (a plugin mistake, found at start)."""
    from zope.interface.verify import verifyObject

    for module in modules:
        verifyObject(IModule, module)
