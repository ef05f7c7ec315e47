"""The switch: dispatch every request, and run INVITEs through callin → route → callout.

The engine is the transaction user of `phpvoip.sip.transaction.TransactionLayer`
(DESIGN.md §1, seed "engine logic for INVITE"):

- a request inside a dialog goes to the leg that owns the dialog (481 if none);
- an out-of-dialog non-INVITE goes to the modules in order, and gets the front
  door's stateless answer if none takes it (a REFER outside a dialog is refused);
- an INVITE gets 100 Trying at once; From == To → 400; `callin()` over the modules
  finds the caller's module (none → 403); the router rewrites the request;
  `callout()` finds the destination's module (none → 404); a `Bridge` owns the legs
  from then on.

Every attempt opens a `CallRecord` and is published as call events
(`phpvoip.events`) from `CallAttempted` to `CallEnded`, refused ones included.

Modules are asked in order of weight, highest first; a module declines with
`NotMine` and refuses with `CallRejected`. Nothing here blocks: a module may answer
with a Deferred and the engine carries on when it fires. SIP legs see only the
`LegHost`; modules and applications see this engine through `IEngine`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from phpvoip import __version__
from phpvoip.bridge import Bridge, RebridgeFailed
from phpvoip.callrecord import CallRecord
from phpvoip.config import CallSettings
from phpvoip.events import CallAttempted, CallEnded, CallEvents, CallRouted, RecentCalls
from phpvoip.frontdoor import FrontDoor
from phpvoip.interfaces import (
    NORMAL_CLEARING,
    CallRejected,
    Cause,
    IEngine,
    IncomingCall,
    IRouter,
    LegReply,
    LegState,
    NotMine,
)
from phpvoip.legs.host import LegHost
from phpvoip.legs.local import local_pair
from phpvoip.legs.sip import InboundLeg, OutboundLeg
from phpvoip.legs.sip_common import sdp_of
from phpvoip.originate import OriginateFailed, Originator, originate_invite, placeholder_offer
from phpvoip.router import Router
from phpvoip.sip.address import Address
from phpvoip.sip.dialog import no_such_dialog
from phpvoip.sip.headers import Via
from phpvoip.sip.ids import new_branch
from phpvoip.sip.message import Request, Response
from phpvoip.sip.sdp import SdpError, parse_sdp
from phpvoip.sip.timers import Timers
from phpvoip.sip.transaction import ServerTransaction, TransactionLayer
from phpvoip.sip.uas import accepts, check_request, request_tag
from phpvoip.transfer import transfer_request

__all__ = ["ALLOWED_METHODS", "Engine", "OriginateFailed"]

log = Logger()

ALLOWED_METHODS = (
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "MESSAGE", "REGISTER", "REFER",
)
SUPPORTED: tuple[str, ...] = ()
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
        media: Any = None,
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
        self.host = LegHost(transport, self.layer, clock, timers, domain, call_settings.keepalive_interval,
                            ", ".join(ALLOWED_METHODS), ", ".join(SUPPORTED), self.user_agent)
        self.front_door = FrontDoor(
            transport, domain, allowed_methods=ALLOWED_METHODS, supported=SUPPORTED, server=self.user_agent,
            registrar=lambda: any(getattr(m, "registers_users", False) for m in self.modules),
        )
        self.events = CallEvents()
        self.recent = RecentCalls(RECORDS_KEPT)
        self.events.add(self.recent)
        self.calls: dict[str, Bridge] = {}
        # The IMediaEngine every call's SDP goes through (phpvoip.mediaconfig), set by
        # the service; None: media flows directly between the endpoints.
        self.media = media
        # Flood protection (phpvoip.limits), set by the service: the caps on calls
        # and on pending requests per source. None: no caps.
        self.limits: Any = None

    def __repr__(self) -> str:
        return f"<Engine {self.domain} calls={len(self.calls)}>"

    @property
    def records(self) -> Any:
        """The records of the last ended calls, newest last (a `RecentCalls` observer)."""
        return self.recent.records

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> defer.Deferred:
        return defer.gatherResults(
            [defer.maybeDeferred(m.start, self) for m in self.modules], consumeErrors=True
        )

    def stop(self) -> defer.Deferred:
        self.hangup_all(Cause(503, "Switch shutting down", "local"))
        return defer.gatherResults([defer.maybeDeferred(m.stop) for m in self.modules], consumeErrors=True)

    def swap_modules(self, modules: Iterable[Any], start: Iterable[Any] = (),
                     stop: Iterable[Any] = ()) -> defer.Deferred:
        """Ask `modules` (by weight, as at start) from now on; start those in
        `start`, stop those in `stop` (a reload). Calls in progress are left alone:
        their legs belong to their bridges, not to the module that made them.
        Fires when every start and stop has."""
        self.modules = sorted(modules, key=lambda m: -m.weight)
        stopping = [defer.maybeDeferred(m.stop) for m in stop]
        starting = [defer.maybeDeferred(m.start, self) for m in start]
        return defer.gatherResults(stopping + starting, consumeErrors=True)

    def counts(self) -> dict[str, int]:
        """Live objects, for the manhole and metrics: returns to zero when idle."""
        transactions = self.layer.counts()
        return {
            "calls": len(self.calls),
            "legs": self.host.live_legs,
            "dialogs": len(self.host.dialogs),
            "client_transactions": transactions["client"],
            "server_transactions": transactions["server"],
        }

    # -- what modules and applications use (IEngine) --------------------------------------------

    def local_address(self, transport: str = "udp") -> Address:
        return self.host.local_address(transport)

    def inbound_leg(self, call: IncomingCall) -> InboundLeg:
        return InboundLeg(self.host, call)

    def outbound_leg(self, invite: Request, destination: Address, credentials: Any = None) -> OutboundLeg:
        return OutboundLeg(self.host, invite, destination, credentials)

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
        if self.user_agent and not request.has("User-Agent"):
            request.add("User-Agent", self.user_agent)
        d: defer.Deferred = defer.Deferred()

        def answered(response: Response) -> None:
            if response.status >= 200 and not d.called:
                d.callback(response)

        self.layer.send_request(request, destination, answered)
        return d

    def add_observer(self, observer: Any) -> None:
        self.events.add(observer)

    def remove_observer(self, observer: Any) -> None:
        self.events.remove(observer)

    def hangup(self, call_id: str, cause: Cause | None = None) -> bool:
        bridge = self.calls.get(call_id)
        if bridge is None:
            return False
        bridge.hangup(cause or Cause(None, "Hung up by the switch", "local"))
        return True

    def hangup_all(self, cause: Cause = NORMAL_CLEARING) -> None:
        for bridge in list(self.calls.values()):
            bridge.hangup(cause)

    def rebridge(self, call_id: str, keep: Any, joining: Any, by: str = "switch", module: str = "",
                 on_progress: Any = None, ring_timeout: float | None = None) -> defer.Deferred:
        """`ring_timeout` (seconds) replaces the calls' ring timeout for `joining`."""
        bridge = self.calls.get(call_id)
        if bridge is None:
            joining.hangup(Cause(481, "No such call", "local"))
            return defer.fail(RebridgeFailed(481, "No such call"))
        return bridge.rebridge(keep, joining, by, module, ring_timeout, on_progress)

    def transfer(self, call_id: str, keep: Any, target: Any, by: str = "switch",
                 referred_by: str | None = None, on_progress: Any = None,
                 ring_timeout: float | None = None) -> defer.Deferred:
        bridge = self.calls.get(call_id)
        if bridge is None:
            return defer.fail(RebridgeFailed(481, "No such call"))
        d = self._destination_for(bridge, keep, target, referred_by)

        def found(answer: tuple[Any, str]) -> defer.Deferred:
            leg, module = answer
            return bridge.rebridge(keep, leg, by, module, ring_timeout, on_progress)

        return d.addCallback(found)

    def destination(self, call_id: str, keep: Any, target: Any) -> defer.Deferred:
        """The outbound leg (not dialled) that `transfer` would ring for `target`,
        as ``(leg, module name)``: for an application that rings several numbers
        at once in one fork. Fails with `RebridgeFailed` (404 when none takes it)."""
        bridge = self.calls.get(call_id)
        if bridge is None:
            return defer.fail(RebridgeFailed(481, "No such call"))
        return self._destination_for(bridge, keep, target, None)

    def _destination_for(self, bridge: Bridge, keep: Any, target: Any,
                         referred_by: str | None) -> defer.Deferred:
        """Route `target` as a call from `keep`'s party, and ask the modules'
        `callout` for the leg; fails with `RebridgeFailed` (404 when none takes it)."""
        template = transfer_request(target, keep.remote_party, self.domain, self.host.new_call_id(),
                                    referred_by)
        routed = self.router.route(template)
        call = IncomingCall(template, None, None, template.call_id, {"transfer": True}, bridge.record.id)
        d = self._ask("callout", routed, call)

        def refused(failure: Failure) -> None:
            failure.trap(NotMine, CallRejected)
            if failure.check(CallRejected):
                raise RebridgeFailed(failure.value.status, failure.value.reason or "Refused")
            raise RebridgeFailed(404, "Not Found")

        return d.addErrback(refused)

    def _refer(self, bridge: Bridge, referrer: Any, target: Any, referred_by: str | None,
               report: Any) -> defer.Deferred:
        """A party's REFER (blind transfer): 202 once the target is being called,
        then its progress and outcome for the transferor's NOTIFYs."""
        keep = bridge.other(referrer)
        by = bridge.side_of(referrer)
        d = self._destination_for(bridge, keep, target, referred_by)

        def found(answer: tuple[Any, str]) -> LegReply:
            leg, module = answer
            log.info("call {call}: the {by} transfers it to {target}", call=bridge.record.id, by=by,
                     target=str(target))
            joined = bridge.rebridge(keep, leg, by, module, on_progress=report)
            joined.addCallbacks(lambda _: report(200, "OK"), lambda f: _report_failure(f, report))
            return LegReply(202, "Accepted")

        def not_placed(failure: Failure) -> LegReply:
            failure.trap(RebridgeFailed)
            return LegReply(failure.value.status, failure.value.reason)

        return d.addCallbacks(found, not_placed)

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
        limits = self.limits
        if limits is not None:
            busy = limits.refusal(request, transaction, len(self.calls))
            if busy is not None:
                transaction.respond(busy)
                return
        if request.to.tag is not None and method != "REGISTER":
            # REGISTER never belongs to a dialog (§10.2); a To tag on it is noise.
            self._in_dialog(request, transaction)
        elif method == "INVITE":
            self._new_call(request, transaction)
        else:
            self._out_of_dialog(request, transaction)

    def ack_received(self, ack: Request, source: Address) -> None:
        dialog = self.host.dialogs.match(ack)
        if dialog is None:
            log.debug("ACK for no dialog dropped", callID=ack.call_id)
            return
        leg = self.host.owners.get(dialog.id)
        if leg is not None:
            leg.ack_received(ack)
        else:
            dialog.receive_request(ack)

    def cancel_received(self, cancel: Request, invite_transaction: ServerTransaction) -> None:
        pending = self.host.waiting.pop(invite_transaction, None)
        if isinstance(pending, InboundLeg):
            pending.cancelled(cancel)
        elif isinstance(pending, IncomingCall):
            pending.attributes["cancelled"] = True

    def response_received(self, response: Response, source: Address) -> None:
        """A response no transaction wanted: a 2xx retransmitted after the INVITE
        transaction ended gets its ACK again (§13.2.2.4)."""
        if 200 <= response.status < 300 and response.cseq.method == "INVITE":
            dialog = self.host.dialogs.find(response.call_id, response.from_.tag or "", response.to.tag)
            if dialog is not None:
                dialog.on_2xx_retransmission(response)

    # -- dispatch ----------------------------------------------------------------------------------

    def _in_dialog(self, request: Request, transaction: ServerTransaction) -> None:
        leg = self.host.owner_of(request)
        if leg is None:
            transaction.respond(no_such_dialog(request))
            return
        leg.request_received(request, transaction)

    def _out_of_dialog(self, request: Request, transaction: ServerTransaction) -> None:
        if request.method == "REFER":
            # RFC 3515 allows a REFER outside any dialog; this switch transfers
            # only calls it carries, asked by one of their parties.
            self._respond(transaction, request.response(403, "REFER Outside A Dialog", request_tag(request)))
            return
        d = self._ask("request", request, transaction, transaction.source)

        def nobody(failure: Failure) -> None:
            failure.trap(NotMine)
            answer = self.front_door.answer(request)
            if answer is not None:
                self._respond(transaction, answer)

        d.addErrback(nobody)
        d.addErrback(self._module_bug, transaction, request)

    def _open_record(self, invite: Request, source: Address | None) -> CallRecord:
        record = CallRecord(
            f"call-{next(_call_numbers)}", invite.call_id, invite.from_.uri.user or "",
            invite.to.uri.user or "", self.clock.seconds(), source,
        )
        if source is not None:  # an application's INVITE never goes on the wire
            record.sip_call_ids.append(invite.call_id)
        self.events.publish(CallAttempted(record, record.start, source))
        return record

    def _new_call(self, invite: Request, transaction: ServerTransaction) -> None:
        transaction.respond(invite.response(100))
        source = transaction.source
        record = self._open_record(invite, source)
        call = IncomingCall(invite, source, transaction, invite.call_id, {}, record.id)
        if _same_party(invite):
            self._refuse(call, record, 400, "From and To are the same")
            return
        if not accepts(invite, "application/sdp"):
            # RFC 4475 §3.3.15: our answer would carry SDP, which the caller
            # says it cannot take.
            self._refuse(call, record, 406, None, (("Accept", "application/sdp"),))
            return
        problem = _bad_sdp(invite)
        if problem is not None:
            # In every media mode: a callee would refuse it too, after ringing.
            self._refuse(call, record, 400, f"Bad SDP: {problem}")
            return
        self.host.waiting[transaction] = call
        self._run_call(call, record)

    def place_call(self, invite: Request) -> defer.Deferred:
        """An application's INVITE, run through the same flow as one from the
        network. Fires with the call's id once both legs are bridged."""
        record = self._open_record(invite, None)
        call = IncomingCall(invite, None, None, invite.call_id, {}, record.id)
        return self._run_call(call, record)

    def originate(self, from_user: str, to_user: str, app: str | None = None) -> defer.Deferred:
        """Click to dial: ring `from_user` (routed like any call to that number) and
        once it answers, connect it to `to_user` (routed as a call from it, as a
        transfer is). Fires with the call's id when `to_user` has answered; fails
        with `OriginateFailed` when either does not answer (nothing is left up).

        With `app` (the name of an application module), the application places a
        call from `from_user` (the caller id shown) to `to_user` and its ``run``
        gets the call when `to_user` answers."""
        if app is not None:
            return self._originate_for(app, from_user, to_user)
        invite = originate_invite(from_user, to_user, self.domain, self.host.new_call_id())
        record = self._open_record(invite, None)
        call = IncomingCall(invite, None, None, invite.call_id, {"originate": to_user}, record.id)
        switch_side, placeholder = local_pair(invite.to.copy(), invite.from_.copy())
        placeholder.offer = placeholder_offer(self.local_address("udp").host)
        placeholder.dial()
        return Originator(self, record, placeholder, to_user, self._run_call(call, record, switch_side)).done

    def _originate_for(self, app: str, from_user: str, to_user: str) -> defer.Deferred:
        module = next((m for m in self.modules if m.name == app and hasattr(m, "place")), None)
        if module is None:
            return defer.fail(OriginateFailed(404, f"No application {app!r}"))
        invite = transfer_request(to_user, None, self.domain, self.host.new_call_id())
        invite.from_.uri.user = from_user
        record = self._open_record(invite, None)
        call = IncomingCall(invite, None, None, invite.call_id, {"app": app}, record.id)
        answered = module.place(invite.call_id, from_user)

        def not_placed(failure: Failure) -> None:
            module.forget(invite.call_id)
            if answered.called:
                return
            if failure.check(CallRejected):
                answered.errback(OriginateFailed(failure.value.status, failure.value.reason or "Refused"))
            elif failure.check(NotMine):
                answered.errback(OriginateFailed(404, "Not Found"))
            else:
                answered.errback(OriginateFailed(500, failure.getErrorMessage()))

        self._run_call(call, record).addErrback(not_placed)
        return answered

    def _run_call(self, call: IncomingCall, record: CallRecord, inbound_leg: Any = None) -> defer.Deferred:
        """callin → route → callout → bridge; `inbound_leg` is the caller's leg when
        the switch itself calls (originate), so no module is asked for it."""
        invite: Request = call.invite  # type: ignore[assignment]
        legs: dict[str, Any] = {}

        def got_inbound(answer: tuple[Any, str]) -> defer.Deferred:
            leg, record.inbound_module = answer
            legs["in"] = leg
            if call.attributes.get("cancelled"):
                _abandon(leg)
                raise _Abandoned()
            routed, route = self.router.route_with(invite)
            record.route = route
            record.routed_from = routed.from_.uri.user or ""
            record.routed_to = routed.to.uri.user or ""
            return self._ask("callout", routed, call).addCallback(got_outbound)

        def got_outbound(answer: tuple[Any, str]) -> str:
            leg, record.outbound_module = answer
            inbound = legs["in"]
            if call.attributes.get("cancelled") or inbound.state is LegState.TERMINATED:
                _abandon(inbound)
                leg.hangup(Cause(487, "Caller cancelled", "remote"))
                raise _Abandoned()
            max_forwards = invite.max_forwards
            if hasattr(leg, "max_forwards") and max_forwards is not None:
                leg.max_forwards = max(max_forwards - 1, 0)
            self.events.publish(CallRouted(record, self.clock.seconds(), record.route,
                                           record.inbound_module, record.outbound_module))
            return self._bridge(record, inbound, leg)

        def failed(failure: Failure) -> Any:
            if failure.check(_Abandoned):
                self._finish(record, 487, "", cancelled=True)
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
                cancelled = bool(call.attributes.get("cancelled")) or inbound.state is LegState.TERMINATED
                inbound.reject(status, reason, headers)
                self._finish(record, status, reason, cancelled)
            else:
                self._refuse(call, record, status, reason, headers)
            return failure if call.transaction is None else None

        d = self._ask("callin", call) if inbound_leg is None else defer.succeed((inbound_leg, "originate"))
        d.addCallback(got_inbound)
        d.addErrback(failed)
        return d

    def _bridge(self, record: CallRecord, inbound: Any, outbound: Any) -> str:
        settings = self.call_settings
        bridge = Bridge(record, inbound, outbound, self.clock, settings.ring_timeout, settings.max_duration,
                        self._call_ended, self.events, self._refer, self.media)
        self.calls[record.id] = bridge
        bridge.start()
        return record.id

    def _call_ended(self, bridge: Bridge) -> None:
        record = bridge.record
        self.calls.pop(record.id, None)
        self.events.publish(CallEnded.of(record, record.end))  # type: ignore[arg-type]

    def _finish(self, record: CallRecord, status: int, reason: str | None, cancelled: bool = False) -> None:
        """End an attempt that never reached a bridge: refused by the switch with
        `status`, or given up by the caller (487) while the modules decided."""
        if record.end is not None:
            return
        if cancelled:
            record.finish(self.clock.seconds(), 487, "Caller cancelled", "caller", cancelled=True)
        else:
            record.finish(self.clock.seconds(), status, reason or "", "switch")
        self.events.publish(CallEnded.of(record, record.end))  # type: ignore[arg-type]

    # -- asking modules ------------------------------------------------------------------------

    def _ask(self, method: str, *args: Any) -> defer.Deferred:
        """Ask the modules in turn until one takes what it is asked; fires with
        ``(answer, module name)``. `NotMine` and non-final refusals pass to the
        next module; if nobody takes it, the first non-final refusal is the
        answer, else `NotMine`."""
        return _Asking(iter(self.modules), method, args).next_module()

    def _refuse(self, call: IncomingCall, record: CallRecord, status: int, reason: str | None,
                headers: Any = ()) -> None:
        transaction = call.transaction
        cancelled = bool(call.attributes.get("cancelled"))
        self._finish(record, status, reason, cancelled)
        if transaction is None:
            return
        self.host.waiting.pop(transaction, None)
        if cancelled:
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


class _Asking:
    """One walk of `Engine._ask` through the modules.

    A small object rather than two closures that call each other: such closures
    make a reference cycle (each holds the other's cell) that kept every call's
    INVITE, transaction and IncomingCall alive until the cyclic collector ran, which
    was most of what the full collections found to free under load."""

    __slots__ = ("modules", "method", "args", "refusals")

    def __init__(self, modules: Iterator[Any], method: str, args: tuple[Any, ...]) -> None:
        self.modules = modules
        self.method = method
        self.args = args
        self.refusals: list[CallRejected] = []  # the non-final ones, first first

    def declined(self, failure: Failure) -> Any:
        failure.trap(NotMine, CallRejected)
        refusal = failure.value
        if isinstance(refusal, CallRejected):
            if refusal.final:
                return failure
            self.refusals.append(refusal)
        return self.next_module()

    def next_module(self) -> Any:
        for module in self.modules:
            try:
                result = getattr(module, self.method)(*self.args)
            except NotMine:
                continue
            except CallRejected as refusal:
                if refusal.final:
                    return defer.fail()
                self.refusals.append(refusal)
                continue
            except Exception:
                return defer.fail()
            if isinstance(result, defer.Deferred):
                return result.addCallback(_named, module.name).addErrback(self.declined)
            return defer.succeed((result, module.name))
        if self.refusals:
            return defer.fail(self.refusals[0])
        return defer.fail(NotMine())


def _named(result: Any, name: str) -> tuple[Any, str]:
    return (result, name)


class _Abandoned(Exception):
    """The caller went away while modules were still deciding."""


def _abandon(leg: Any) -> None:
    """End a leg whose caller cancelled while modules decided (the transaction
    layer has answered the INVITE 487 already)."""
    if isinstance(leg, InboundLeg):
        leg.cancelled(None)
    else:
        leg.hangup(Cause(487, "Caller cancelled", "remote"))


def _report_failure(failure: Failure, report: Any) -> None:
    failure.trap(RebridgeFailed)
    report(failure.value.status, failure.value.reason)


def _same_party(invite: Request) -> bool:
    """DESIGN.md §1: an INVITE whose From and To name the same user is refused."""
    caller, callee = invite.from_.uri, invite.to.uri
    return bool(caller.user) and caller.user == callee.user and caller.host.lower() == callee.host.lower()


def _bad_sdp(invite: Request) -> str | None:
    """Why the INVITE's SDP body is not SDP (RFC 4566), or None (no SDP is fine:
    a delayed offer)."""
    body = sdp_of(invite)
    if body is None:
        return None
    try:
        parse_sdp(body)
    except SdpError as e:
        return e.reason
    return None
