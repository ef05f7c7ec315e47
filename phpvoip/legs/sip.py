"""The two SIP legs of a call: one faces the caller, one faces the destination.

`InboundLeg` is the switch as UAS towards the caller (the seed's "callee" session):
it answers the INVITE that came in. `OutboundLeg` is the switch as UAC towards the
destination (the seed's "caller" session): it sends a new INVITE of its own. Both turn
what the far end does into the `ICallLegListener` vocabulary for the bridge, and turn
the bridge's orders into SIP.

In-dialog requests go to the first hop of the route set if there is one, else back
to the address the dialog's INVITE came from or went to. That is what keeps phones
behind NAT reachable; a Contact with an unresolvable host name then costs nothing.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.interfaces import Cause, ICallLeg, IncomingCall, LegReply, LegState
from phpvoip.sip.address import Address
from phpvoip.sip.dialog import Dialog, DialogError, UacDialogs, UacEvent, error_response
from phpvoip.sip.headers import CSeq, NameAddr, Via
from phpvoip.sip.ids import new_branch, new_tag
from phpvoip.sip.message import Request, Response
from phpvoip.sip.transaction import is_local, make_cancel

if TYPE_CHECKING:
    from phpvoip.engine import Engine

__all__ = ["InboundLeg", "OutboundLeg"]

log = Logger()
_numbers = itertools.count(1)

SDP = "application/sdp"
# In-dialog requests the bridge relays to the other leg; the rest are answered here.
RELAYED = frozenset(("INVITE", "UPDATE", "INFO", "MESSAGE"))


def _sdp_of(message: Request | Response) -> bytes | None:
    """The message's body if it is SDP (RFC 3264 offers and answers)."""
    if message.body and (message.get("Content-Type") or "").split(";")[0].strip().lower() == SDP:
        return message.body
    return None


def _set_body(message: Request | Response, body: bytes | None, content_type: str | None = SDP) -> None:
    if body:
        message.set("Content-Type", content_type or SDP)
        message.body = body


class _SipLeg:
    """What both SIP legs share: the dialog, in-dialog requests, keepalive."""

    kind = "leg"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.id = f"{self.kind}-{next(_numbers)}"
        self.state = LegState.IDLE
        self.listener: Any = None
        self.local_party: NameAddr | None = None
        self.remote_party: NameAddr | None = None
        self.remote_sdp: bytes | None = None
        self.offer: bytes | None = None
        self.dialog: Dialog | None = None
        self.peer_allow: str = ""  # the far end's Allow header, for keepalive choice
        self._keepalive: Any = None
        self._finished = False

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} {self.id} {self.state}>"

    @property
    def peer_address(self) -> Address:
        raise NotImplementedError

    def _transport(self) -> str:
        return self.peer_address.transport

    # -- in-dialog requests we send ----------------------------------------------------

    def _destination(self) -> Address:
        dialog = self.dialog
        if dialog is not None and dialog.route_set:
            hop = dialog.next_hop()
            address = hop.address()
            if address is not None:
                return address
        return self.peer_address

    def _new_request(self, method: str, body: bytes | None = None, content_type: str | None = None,
                     headers: Any = ()) -> Request:
        local = self.engine.local_address(self._transport())
        request = self.dialog.new_request(  # type: ignore[union-attr]
            method, local.host, local.port, local.transport.upper(), b"", headers
        )
        if method == "INVITE":
            self.engine.add_capabilities(request)
        _set_body(request, body, content_type)
        return request

    def _send(self, request: Request, on_response: Any) -> None:
        self.engine.layer.send_request(request, self._destination(), on_response)

    def _send_bye(self, cause: Cause) -> None:
        """BYE with an RFC 3326 Reason; the dialog ends as it goes (§15.1.1)."""
        dialog = self.dialog
        if dialog is None or dialog.state.value == "terminated":
            return
        headers = [("Reason", cause.reason_header)] if cause.status is not None or cause.text else []
        bye = self._new_request("BYE", headers=headers)
        self._send(bye, self._bye_answered)

    def _bye_answered(self, response: Response) -> None:
        """Nothing waits on a BYE's answer: the call has ended either way."""

    def request(
        self, method: str, body: bytes, content_type: str | None, headers: Any = ()
    ) -> defer.Deferred:
        """Send an in-dialog request for the bridge; fires with the `LegReply`."""
        if self.state != LegState.ESTABLISHED or self.dialog is None:
            return defer.succeed(LegReply(481, "Call/Transaction Does Not Exist"))
        try:
            request = self._new_request(method, body or None, content_type, headers)
        except Exception as e:  # e.g. an INVITE while another is in progress (§14.1)
            log.debug("cannot send {method} on {leg}: {error}", method=method, leg=self.id, error=e)
            return defer.succeed(LegReply(491, "Request Pending"))
        d: defer.Deferred = defer.Deferred()

        def answered(response: Response) -> None:
            if response.status < 200:
                return
            dialog = self.dialog
            if dialog is not None:
                dialog.receive_response(response)
                if method == "INVITE" and response.status < 300 and dialog.state.value != "terminated":
                    local = self.engine.local_address(self._transport())
                    ack = dialog.build_ack(response, local.host, local.port, local.transport.upper(),
                                           invite=request)
                    dialog.send_ack(ack, self._destination())
            if not d.called:
                d.callback(LegReply(response.status, response.reason, response.body,
                                    response.get("Content-Type")))
            if response.status in (408, 481) and self.state == LegState.ESTABLISHED:
                self._far_end_gone(response)

        self._send(request, answered)
        return d

    # -- in-dialog requests we receive ---------------------------------------------------

    def request_received(self, request: Request, transaction: Any) -> None:
        dialog = self.dialog
        try:
            dialog.receive_request(request)  # type: ignore[union-attr]
        except DialogError as e:
            transaction.respond(error_response(request, e))
            return
        method = request.method
        if method == "BYE":
            transaction.respond(request.response(200))
            self._ended_by_peer(Cause(None, _reason_text(request) or "Normal call clearing", "remote"))
        elif method == "OPTIONS":
            response = request.response(200)
            self.engine.add_capabilities(response)
            transaction.respond(response)
        elif method in RELAYED and self.listener is not None and self.state == LegState.ESTABLISHED:
            self._relay(request, transaction)
        elif method == "INVITE" or method == "UPDATE":
            transaction.respond(request.response(491 if self.state != LegState.ESTABLISHED else 500))
        else:
            response = request.response(501)
            self.engine.add_capabilities(response)
            transaction.respond(response)

    def _relay(self, request: Request, transaction: Any) -> None:
        content_type = request.get("Content-Type")
        d = defer.maybeDeferred(
            self.listener.leg_request, self, request.method, request.body, content_type, ()
        )

        def reply(answer: LegReply) -> None:
            response = request.response(answer.status, answer.reason or None)
            _set_body(response, answer.body or None, answer.content_type)
            if request.method == "INVITE" and 200 <= answer.status < 300 and self.dialog is not None:
                self.engine.add_contact(response, self._transport(), self.local_party)
                self.engine.add_capabilities(response)
                transaction.respond(response)
                self.dialog.answer(response, transaction.source, self.engine.clock, self.engine.timers,
                                   self._no_ack, send_first=False)
                return
            transaction.respond(response)
            if self.dialog is not None:
                self.dialog.response_sent(response)

        def failed(failure: Any) -> None:
            log.failure("relaying {method} failed", failure, method=request.method)
            transaction.respond(request.response(500))

        d.addCallbacks(reply, failed)

    def ack_received(self, ack: Request) -> None:
        if self.dialog is not None:
            self.dialog.receive_request(ack)

    # -- keepalive ----------------------------------------------------------------------------

    def _start_keepalive(self) -> None:
        interval = self.engine.call_settings.keepalive_interval
        if interval > 0:
            self._keepalive = self.engine.clock.callLater(interval, self._probe)

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None

    def _probe(self) -> None:
        """Ask the far end whether it still knows the call (OPTIONS, or INFO for
        peers whose Allow lists INFO but not OPTIONS). Only a timeout or 481 means
        it is gone: any other answer shows it is alive."""
        self._keepalive = None
        if self.state != LegState.ESTABLISHED or self.dialog is None:
            return
        allow = {m.strip().upper() for m in self.peer_allow.split(",")}
        method = "INFO" if "INFO" in allow and "OPTIONS" not in allow else "OPTIONS"
        try:
            probe = self._new_request(method)
        except Exception:
            return

        def answered(response: Response) -> None:
            if response.status < 200 or self.state != LegState.ESTABLISHED:
                return
            if response.status in (408, 481):
                self._far_end_gone(response)
            else:
                self._start_keepalive()

        self._send(probe, answered)

    def _far_end_gone(self, response: Response) -> None:
        """The far end did not answer a probe (408) or no longer knows the dialog
        (481): the call is over. After a timeout it still gets a BYE with the
        Reason, since a peer deaf only to our probes would otherwise keep the call."""
        cause = Cause(408, "No answer to keepalive", "timeout")
        log.info("{leg} of call {callID}: far end gone ({status})", leg=self.id,
                 callID=self.dialog.call_id if self.dialog else "", status=response.status)
        if response.status == 408:
            self._send_bye(cause)
        elif self.dialog is not None:
            self.dialog.terminate()
        self._ended_by_peer(cause)

    def _no_ack(self) -> None:
        """Our 2xx was never ACKed (§13.3.1.4): end the dialog with a BYE."""
        if self.state == LegState.TERMINATED:
            return
        cause = Cause(408, "No ACK for 2xx", "timeout")
        self._send_bye(cause)
        self._ended_by_peer(cause)

    def _ended_by_peer(self, cause: Cause) -> None:
        if self.state == LegState.TERMINATED:
            return
        self._terminated()
        if self.listener is not None:
            self.listener.leg_ended(self, cause)

    def _terminated(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.state = LegState.TERMINATED
        self._stop_keepalive()
        self.engine.leg_finished(self)


def _reason_text(request: Request) -> str | None:
    """The text of an RFC 3326 Reason header, if the request has one."""
    value = request.get("Reason")
    if not value:
        return None
    start = value.find('text="')
    if start < 0:
        return value
    return value[start + 6 :].split('"', 1)[0]


@implementer(ICallLeg)
class InboundLeg(_SipLeg):
    """The leg facing the caller: the switch answers the INVITE that came in."""

    kind = "in"

    def __init__(self, engine: Engine, call: IncomingCall) -> None:
        super().__init__(engine)
        invite: Request = call.invite  # type: ignore[assignment]
        self.invite = invite
        self.transaction = call.transaction
        self.source: Address = call.source  # type: ignore[assignment]
        self.local_tag = new_tag()
        self.local_party = invite.to.copy()
        self.local_party.tag = self.local_tag
        self.remote_party = invite.from_.copy()
        self.remote_sdp = _sdp_of(invite)
        self.peer_allow = invite.get("Allow") or ""
        self.state = LegState.CALLING
        engine.inbound_started(self)

    @property
    def peer_address(self) -> Address:
        return self.source

    def dial(self) -> None:
        """Inbound legs are dialled by their caller, not by us."""

    def _response(self, status: int, reason: str | None, sdp: bytes | None = None) -> Response:
        response = self.invite.response(status, reason, to_tag=self.local_tag)
        if status > 100 and status < 300:
            self.engine.add_contact(response, self._transport(), self.local_party)
            for route in self.invite.get_all("Record-Route"):
                response.add("Record-Route", route)
        if 200 <= status < 300:
            self.engine.add_capabilities(response)
        _set_body(response, sdp)
        return response

    def _ensure_dialog(self, response: Response) -> None:
        if self.dialog is None:
            self.dialog = Dialog.uas(self.invite, response, self.engine.send_direct)
            self.engine.dialog_started(self.dialog, self)

    def progress(self, status: int, reason: str, sdp: bytes | None = None) -> None:
        if self.state not in (LegState.CALLING, LegState.EARLY):
            return
        response = self._response(status, reason, sdp)
        self._ensure_dialog(response)
        self.state = LegState.EARLY
        self.transaction.respond(response)

    def answer(self, sdp: bytes | None = None) -> None:
        if self.state not in (LegState.CALLING, LegState.EARLY):
            return
        response = self._response(200, None, sdp)
        self._ensure_dialog(response)
        self.state = LegState.ESTABLISHED
        self.engine.inbound_settled(self)
        self.transaction.respond(response)
        self.dialog.answer(response, self.source, self.engine.clock, self.engine.timers,  # type: ignore[union-attr]
                           self._no_ack, send_first=False)
        self._start_keepalive()

    def reject(self, status: int, reason: str | None = None, headers: Any = ()) -> None:
        if self.state not in (LegState.CALLING, LegState.EARLY):
            return
        response = self._response(status, reason or None)
        for name, value in headers:
            response.add(name, value)
        self._terminated()
        self.engine.inbound_settled(self)
        if self.dialog is not None:
            self.dialog.terminate()
        self.transaction.respond(response)

    def hangup(self, cause: Cause) -> None:
        if self.state == LegState.TERMINATED:
            return
        if self.state == LegState.ESTABLISHED:
            self._send_bye(cause)
            self._terminated()
        else:
            status = cause.status if cause.status and cause.status >= 300 else 480
            self.reject(status, cause.text or None, [("Reason", cause.reason_header)])

    def cancelled(self, cancel: Request | None) -> None:
        """The caller CANCELled (the transaction layer answers the INVITE 487)."""
        if self.state not in (LegState.CALLING, LegState.EARLY):
            return
        self._terminated()
        self.engine.inbound_settled(self)
        if self.dialog is not None:
            self.dialog.terminate()
        if self.listener is not None:
            text = (_reason_text(cancel) if cancel is not None else None) or "Caller cancelled"
            self.listener.leg_ended(self, Cause(487, text, "remote"))


@implementer(ICallLeg)
class OutboundLeg(_SipLeg):
    """The leg facing the destination: the switch sends an INVITE of its own.

    CANCEL is the caller's final word (DESIGN.md §1): once `hangup()` is called
    before answer, a 2xx that still arrives (it crossed the CANCEL, or the 487
    never comes) is ACKed and BYEd at once."""

    kind = "out"

    def __init__(
        self, engine: Engine, template: Request, destination: Address, credentials: Any = None
    ) -> None:
        super().__init__(engine)
        self.template: Request | None = template  # None once the leg has ended
        self.destination = destination
        self.credentials = credentials
        self.local_party = template.from_.copy()
        self.remote_party = template.to.copy()
        self.invite: Request | None = None  # our latest INVITE; None again once ended
        self._invite_seq = 0  # its CSeq number, which its responses carry
        self.max_forwards = 70
        self._uac: UacDialogs | None = None
        self._tried_auth = False
        self._cancelled = False
        self._extra_dialogs: list[Dialog] = []
        self._invite_tx: Any = None  # the client transaction of our latest INVITE

    @property
    def peer_address(self) -> Address:
        return self.destination

    def _build_invite(self, cseq: int, call_id: str, from_tag: str) -> Request:
        template = self.template
        assert template is not None, "an ended leg builds no INVITE"
        local = self.engine.local_address(self.destination.transport)
        invite = Request("INVITE", template.uri.copy())
        via = Via(local.transport.upper(), local.host, local.port, {"branch": new_branch(), "rport": None})
        invite.add("Via", via)
        invite.add("Max-Forwards", self.max_forwards)
        from_ = template.from_.copy()
        from_.tag = from_tag
        invite.add("From", from_)
        to = template.to.copy()
        to.tag = None
        invite.add("To", to)
        invite.add("Call-ID", call_id)
        invite.add("CSeq", CSeq(cseq, "INVITE"))
        self.engine.add_contact(invite, local.transport, from_)
        self.engine.add_capabilities(invite)
        for name, value in template.headers():
            if name.lower() not in _TEMPLATE_OWN:
                invite.add(name, value)
        _set_body(invite, self.offer)
        return invite

    def dial(self) -> None:
        if self.state != LegState.IDLE:
            return
        self.state = LegState.CALLING
        invite = self._build_invite(1, self.engine.new_call_id(), new_tag())
        self.local_party = invite.from_.copy()
        self._send_invite(invite)

    def _send_invite(self, invite: Request) -> None:
        self.invite = invite
        self._invite_seq = invite.cseq.seq
        if self._uac is not None:
            self._uac.close()
        self._uac = UacDialogs(invite, self.engine.clock, self.engine.timers, self.engine.send_direct)
        self._invite_tx = None
        self._invite_tx = self.engine.layer.send_request(invite, self.destination, self._on_response)

    # -- responses to our INVITE ----------------------------------------------------------

    def _on_response(self, response: Response) -> None:
        uac = self._uac
        if uac is None or response.cseq.seq != self._invite_seq:
            return
        status = response.status
        if status >= 300:
            self._failed(response)
            return
        update = uac.on_response(response)
        event = update.event
        if event is UacEvent.EARLY:
            self._adopt(update.dialog, early=True)
        if status < 200:
            if status > 100 and not self._cancelled and self.state in (LegState.CALLING, LegState.EARLY):
                self.state = LegState.EARLY
                sdp = _sdp_of(response)
                if sdp is not None:
                    self.remote_sdp = sdp
                if self.listener is not None:
                    self.listener.leg_progress(self, status, response.reason, sdp)
            return
        if event is not UacEvent.CONFIRMED:
            return  # a retransmission: UacDialogs has sent the ACK again
        dialog = update.dialog
        self._ack(dialog, response)
        if self._cancelled or self.state in (LegState.ESTABLISHED, LegState.TERMINATED):
            # The CANCEL/200 race, or a second fork answering: we do not want this
            # dialog. It is ACKed (above) and ended at once.
            self._end_unwanted(dialog)
            return
        self._adopt(dialog, early=False)
        self.dialog = dialog
        self.state = LegState.ESTABLISHED
        self.remote_party = response.to.copy()
        self.remote_sdp = _sdp_of(response)
        self.peer_allow = response.get("Allow") or self.peer_allow
        self._start_keepalive()
        if self.listener is not None:
            self.listener.leg_answered(self, self.remote_sdp)

    def _adopt(self, dialog: Dialog | None, early: bool) -> None:
        if dialog is None:
            return
        if self.engine.dialog_owner(dialog) is None:
            self.engine.dialog_started(dialog, self)
        if early and self.dialog is None:
            self.dialog = dialog

    def _ack(self, dialog: Dialog, response: Response) -> None:
        local = self.engine.local_address(self.destination.transport)
        ack = dialog.build_ack(response, local.host, local.port, local.transport.upper(), invite=self.invite)
        destination = self.destination
        if dialog.route_set:
            destination = dialog.next_hop().address() or destination
        dialog.send_ack(ack, destination)

    def _end_unwanted(self, dialog: Dialog) -> None:
        log.debug("ending unwanted dialog {dialog!r}", dialog=dialog)
        if self.engine.dialog_owner(dialog) is None:
            self.engine.dialog_started(dialog, self)
        local = self.engine.local_address(self.destination.transport)
        bye = dialog.new_request("BYE", local.host, local.port, local.transport.upper(),
                                 headers=[("Reason", 'SIP;cause=487;text="Call cancelled"')])
        destination = dialog.next_hop().address() if dialog.route_set else None
        self.engine.layer.send_request(bye, destination or self.destination, self._bye_answered)

    def _failed(self, response: Response) -> None:
        status = response.status
        if status in (401, 407) and self._answer_challenge(response):
            return
        if self._uac is not None:
            self._uac.on_response(response)
        if self.state == LegState.ESTABLISHED:
            return  # a late failure from another fork after one answered
        was_cancelled = self._cancelled
        if self.state != LegState.TERMINATED:
            self._terminated()
        if was_cancelled or self.listener is None:
            return
        reason = response.reason
        if is_local(response) and status == 503:
            status, reason = 480, "Destination Unreachable"
        self.listener.leg_failed(self, status, reason)

    def _answer_challenge(self, response: Response) -> bool:
        """Answer a 401/407 to our INVITE once, with the line's credentials."""
        credentials = self.credentials
        if credentials is None or self._tried_auth or self._cancelled or self.template is None:
            return False
        proxy = response.status == 407
        name = "proxy-authenticate" if proxy else "www-authenticate"
        values = [v for n, v in response.headers() if n.lower() == name]
        if not credentials.update(values, proxy=proxy, had_credentials=False):
            return False
        self._tried_auth = True
        old = self.invite
        invite = self._build_invite(old.cseq.seq + 1, old.call_id, old.from_.tag)  # type: ignore[union-attr]
        invite.add(credentials.header_name, credentials.authorization("INVITE", str(invite.uri)))
        self._send_invite(invite)
        return True

    # -- what the bridge asks ---------------------------------------------------------------

    def hangup(self, cause: Cause) -> None:
        if self.state == LegState.TERMINATED or self._cancelled:
            return
        if self.state == LegState.ESTABLISHED:
            self._send_bye(cause)
            self._terminated()
            return
        if self.state == LegState.IDLE:
            self._terminated()
            return
        # Not answered yet: CANCEL (the transaction layer holds it until the first
        # provisional arrives, §9.1). The state is final for the bridge at once.
        self._cancelled = True
        cancel = make_cancel(self.invite)  # type: ignore[arg-type]
        cancel.add("Reason", cause.reason_header)
        self.engine.layer.send_request(cancel, self.destination, _ignore)
        self._terminated()

    def progress(self, status: int, reason: str, sdp: bytes | None = None) -> None:
        """Outbound legs send requests; provisional responses are not theirs to send."""

    def answer(self, sdp: bytes | None = None) -> None:
        """Outbound legs are answered by the far end, not by us."""

    def reject(self, status: int, reason: str | None = None, headers: Any = ()) -> None:
        self.hangup(Cause(status, reason or "", "local"))

    def _terminated(self) -> None:
        super()._terminated()
        # Early dialogs that never got a 2xx end with the INVITE; the UacDialogs
        # timer would otherwise hold them for 64*T1.
        if self._uac is not None and not self._cancelled:
            self._uac.close()
            # The INVITE transaction lives on for 64*T1 (RFC 6026 Timer M) only to
            # pass up retransmitted 2xx, which get their ACK again from their
            # dialog; nothing else reaches an ended leg but what it ignores (a
            # 2xx of a new fork finds UacDialogs closed). So the transaction
            # talks to the dialogs directly and need not keep this leg, nor the
            # leg our INVITE. (A cancelled leg still ACKs and BYEs a 2xx that
            # crossed its CANCEL, from the INVITE.)
            tx, self._invite_tx = self._invite_tx, None
            if tx is not None and not tx.terminated:
                tx.on_response = self._uac.on_response
            self.invite = None
        self.template = None


# Headers a module's template may not impose on the INVITE a leg builds.
_TEMPLATE_OWN = frozenset(
    ("via", "max-forwards", "from", "to", "call-id", "cseq", "contact", "content-type", "content-length",
     "allow", "supported", "user-agent", "route", "record-route")
)


def _ignore(response: Response) -> None:
    pass
