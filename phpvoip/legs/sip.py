"""The two SIP legs of a call: one faces the caller, one faces the destination.

`InboundLeg` is the switch as UAS towards the caller (the seed's "callee" session):
it answers the INVITE that came in. `OutboundLeg` is the switch as UAC towards the
destination (the seed's "caller" session): it sends a new INVITE of its own. Both turn
what the far end does into the `ICallLegListener` vocabulary for their owner (the
bridge), and turn the owner's orders into SIP. Each is a state machine whose table
is written at the top of its class; what they share is in `sip_common`.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.interfaces import Cause, ICallLeg, ILegHost, IncomingCall, LegState
from phpvoip.legs.sip_common import SipLeg, reason_text, sdp_of, set_body
from phpvoip.sip.address import Address
from phpvoip.sip.dialog import Dialog, UacDialogs, UacEvent
from phpvoip.sip.headers import CSeq, Via
from phpvoip.sip.ids import new_branch, new_tag
from phpvoip.sip.message import Request, Response
from phpvoip.sip.transaction import is_local, make_cancel

__all__ = ["InboundLeg", "OutboundLeg"]

log = Logger()

S = LegState

# Headers a module's template may not impose on the INVITE a leg builds.
_TEMPLATE_OWN = frozenset(
    ("via", "max-forwards", "from", "to", "call-id", "cseq", "contact", "content-type", "content-length",
     "allow", "supported", "user-agent", "route", "record-route")
)


@implementer(ICallLeg)
class InboundLeg(SipLeg):
    """The leg facing the caller: the switch answers the INVITE that came in.

        calling ─(progress)→ early ─(answer)→ established ─(hangup / BYE)→ terminated
           └────────(reject / hangup / CANCEL)──────────────────────────────┘
    """

    kind = "in"

    _BEFORE_ANSWER = {
        "dial": "_ignore",  # an inbound leg is dialled by its caller
        "progress": "_send_progress",
        "answer": "_send_answer",
        "reject": "_send_refusal",
        "hangup": "_refuse_for_hangup",
        "cancel": "_caller_cancelled",
        "request": "_serve_early_request",
    }
    TABLE = {
        S.CALLING: _BEFORE_ANSWER,
        S.EARLY: _BEFORE_ANSWER,
        S.ESTABLISHED: {
            "dial": "_ignore",
            "hangup": "_hang_up_established",
            "cancel": "_ignore",  # §9.2: a CANCEL after the final response changes nothing
            "request": "_serve_request",
            "keepalive_failed": "_far_end_gone",
            "no_ack": "_ack_never_came",
        },
        S.TERMINATED: {
            "dial": "_ignore",
            # The owner may still be deciding when the caller goes away.
            "progress": "_ignore",
            "answer": "_ignore",
            "reject": "_ignore",
            "hangup": "_ignore",
            "cancel": "_ignore",
            "request": "_refuse_after_end",
            "keepalive_failed": "_ignore",
            "no_ack": "_ignore",
        },
    }

    def __init__(self, host: ILegHost, call: IncomingCall) -> None:
        super().__init__(host)
        invite: Request = call.invite  # type: ignore[assignment]
        self.invite = invite
        self.transaction = call.transaction
        self.source: Address = call.source  # type: ignore[assignment]
        self.local_tag = new_tag()
        self.local_party = invite.to.copy()
        self.local_party.tag = self.local_tag
        self.remote_party = invite.from_.copy()
        self.remote_sdp = sdp_of(invite)
        self.peer_allow = invite.get("Allow") or ""
        self.state = S.CALLING
        host.ringing(self)

    @property
    def peer_address(self) -> Address:
        return self.source

    # -- ICallLeg: every order is an event of the table ------------------------------------

    def dial(self) -> None:
        self._event("dial")

    def progress(self, status: int, reason: str, sdp: bytes | None = None) -> None:
        self._event("progress", status, reason, sdp)

    def answer(self, sdp: bytes | None = None) -> None:
        self._event("answer", sdp)

    def reject(self, status: int, reason: str | None = None, headers: Any = ()) -> None:
        self._event("reject", status, reason, headers)

    def hangup(self, cause: Cause) -> None:
        self._event("hangup", cause)

    def cancelled(self, cancel: Request | None) -> None:
        """The caller CANCELled (the transaction layer answers the INVITE 487)."""
        self._event("cancel", cancel)

    # -- handlers ----------------------------------------------------------------------------

    def _response(self, status: int, reason: str | None, sdp: bytes | None = None) -> Response:
        response = self.invite.response(status, reason, to_tag=self.local_tag)
        if 100 < status < 300:
            self.host.add_contact(response, self._transport(), self.local_party)
            for route in self.invite.get_all("Record-Route"):
                response.add("Record-Route", route)
        if 200 <= status < 300:
            self.host.add_capabilities(response)
        set_body(response, sdp)
        return response

    def _ensure_dialog(self, response: Response) -> None:
        if self.dialog is None:
            self.dialog = Dialog.uas(self.invite, response, self.host.send_direct)
            self.host.dialog_started(self.dialog, self)

    def _send_progress(self, status: int, reason: str, sdp: bytes | None) -> None:
        response = self._response(status, reason, sdp)
        self._ensure_dialog(response)
        self.state = S.EARLY
        self.transaction.respond(response)

    def _send_answer(self, sdp: bytes | None) -> None:
        response = self._response(200, None, sdp)
        self._ensure_dialog(response)
        # No offer in the INVITE: ours is in this 2xx and the ACK answers it (§13.2.1).
        self._answer_in_ack = sdp is not None and sdp_of(self.invite) is None
        self.state = S.ESTABLISHED
        self.host.settled(self)
        self.transaction.respond(response)
        self.dialog.answer(response, self.source, self.host.clock, self.host.timers,  # type: ignore[union-attr]
                           self._no_ack, send_first=False)
        self._start_keepalive()

    def _send_refusal(self, status: int, reason: str | None, headers: Any) -> None:
        response = self._response(status, reason or None)
        for name, value in headers:
            response.add(name, value)
        self._terminated()
        if self.dialog is not None:
            self.dialog.terminate()
        self.transaction.respond(response)

    def _refuse_for_hangup(self, cause: Cause) -> None:
        status = cause.status if cause.status and cause.status >= 300 else 480
        self._send_refusal(status, cause.text or None, [("Reason", cause.reason_header)])

    def _caller_cancelled(self, cancel: Request | None) -> None:
        self._terminated()
        if self.dialog is not None:
            self.dialog.terminate()
        if self.listener is not None:
            text = (reason_text(cancel) if cancel is not None else None) or "Caller cancelled"
            self.listener.leg_ended(self, Cause(487, text, "remote"))

    def _bye_before_answer(self, request: Request, transaction: Any) -> None:
        """§15: the caller "MAY send a BYE for either confirmed or early dialogs";
        before our answer it means what a CANCEL would: the INVITE gets 487."""
        transaction.respond(request.response(200))
        text = reason_text(request) or "Caller hung up before answer"
        self._send_refusal(487, "Request Terminated", ())
        if self.listener is not None:
            self.listener.leg_ended(self, Cause(487, text, "remote"))


@implementer(ICallLeg)
class OutboundLeg(SipLeg):
    """The leg facing the destination: the switch sends an INVITE of its own.

        idle ─(dial)→ calling ─(18x)→ early ─(2xx)→ established ─(hangup / BYE)→ terminated
                         └───────(failure / hangup: CANCEL)────────────────────────┘

    CANCEL is the caller's final word (DESIGN.md §1): once `hangup()` is called
    before answer, a 2xx that still arrives (it crossed the CANCEL, or the 487
    never comes) is ACKed and BYEd at once (``answered`` in state terminated)."""

    kind = "out"

    _BEFORE_ANSWER = {
        "dial": "_ignore",
        "provisional": "_heard_provisional",
        "answered": "_heard_answer",
        "failed": "_heard_failure",
        "hangup": "_cancel",
        "reject": "_cancel",
        "request": "_serve_early_request",
    }
    TABLE = {
        S.IDLE: {
            "dial": "_send_first_invite",
            "hangup": "_end_undialled",
            "reject": "_end_undialled",
        },
        S.CALLING: _BEFORE_ANSWER,
        S.EARLY: _BEFORE_ANSWER,
        S.ESTABLISHED: {
            "dial": "_ignore",
            "provisional": "_ignore",  # a late 18x of another fork of our INVITE
            "answered": "_end_unwanted",  # a second fork's 2xx
            "failed": "_ignore",  # a late failure of another fork
            "hangup": "_hang_up_established",
            "reject": "_hang_up_established",
            "request": "_serve_request",
            "keepalive_failed": "_far_end_gone",
            "no_ack": "_ack_never_came",
        },
        S.TERMINATED: {
            "dial": "_ignore",
            "provisional": "_ignore",
            "answered": "_end_unwanted",  # the CANCEL/200 race
            "failed": "_ignore",  # the 487 to our CANCEL
            "hangup": "_ignore",
            "reject": "_ignore",
            "request": "_refuse_after_end",
            "keepalive_failed": "_ignore",
            "no_ack": "_ignore",
        },
    }

    def __init__(
        self, host: ILegHost, template: Request, destination: Address, credentials: Any = None
    ) -> None:
        super().__init__(host)
        self.template: Request | None = template  # None once the leg is answered or has ended
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
        self._invite_tx: Any = None  # the client transaction of our latest INVITE

    @property
    def peer_address(self) -> Address:
        return self.destination

    # -- ICallLeg --------------------------------------------------------------------------

    def dial(self) -> None:
        self._event("dial")

    def hangup(self, cause: Cause) -> None:
        self._event("hangup", cause)

    def reject(self, status: int, reason: str | None = None, headers: Any = ()) -> None:
        self._event("reject", Cause(status, reason or "", "local"))

    def progress(self, status: int, reason: str, sdp: bytes | None = None) -> None:
        raise TypeError("an outbound leg sends requests; provisional responses are not its to send")

    def answer(self, sdp: bytes | None = None) -> None:
        raise TypeError("an outbound leg is answered by the far end, not by the switch")

    # -- dialling ---------------------------------------------------------------------------

    def _build_invite(self, cseq: int, call_id: str, from_tag: str) -> Request:
        template = self.template
        assert template is not None, "an ended leg builds no INVITE"
        local = self.host.local_address(self.destination.transport)
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
        self.host.add_contact(invite, local.transport, from_)
        self.host.add_capabilities(invite)
        for name, value in template.headers():
            if name.lower() not in _TEMPLATE_OWN:
                invite.add(name, value)
        set_body(invite, self.offer)
        return invite

    def _send_first_invite(self) -> None:
        self.state = S.CALLING
        invite = self._build_invite(1, self.host.new_call_id(), new_tag())
        self.local_party = invite.from_.copy()
        self._send_invite(invite)

    def _send_invite(self, invite: Request) -> None:
        self.invite = invite
        self._invite_seq = invite.cseq.seq
        if self._uac is not None:
            self._uac.close()
        self._uac = UacDialogs(invite, self.host.clock, self.host.timers, self.host.send_direct)
        self._invite_tx = None
        self._invite_tx = self.host.start_transaction(invite, self.destination, self._on_response)

    def _end_undialled(self, cause: Cause) -> None:
        self._terminated()

    # -- responses to our INVITE --------------------------------------------------------------

    def _on_response(self, response: Response) -> None:
        uac = self._uac
        if uac is None or response.cseq.seq != self._invite_seq:
            return
        status = response.status
        if status >= 300:
            if status in (401, 407) and self._answer_challenge(response):
                return
            uac.on_response(response)
            self._event("failed", response)
            return
        update = uac.on_response(response)
        event = update.event
        if event is UacEvent.EARLY:
            self._adopt(update.dialog, early=True)
        if status < 200:
            if status > 100:
                self._event("provisional", response)
            return
        if event is UacEvent.CONFIRMED:
            self._event("answered", update.dialog, response)
        # Anything else is a retransmitted 2xx: UacDialogs has sent the ACK again.

    def _heard_provisional(self, response: Response) -> None:
        self.state = S.EARLY
        sdp = sdp_of(response)
        if sdp is not None:
            self.remote_sdp = sdp
        if self.listener is not None:
            self.listener.leg_progress(self, response.status, response.reason, sdp)

    def _heard_answer(self, dialog: Dialog, response: Response) -> None:
        if self.offer is None and sdp_of(response) is not None:
            # Delayed offer: the 2xx offers, our ACK answers with what the caller says.
            self._hold_ack(dialog, response, self.invite)
        else:
            self._send_ack(dialog, response, self.invite, None)
        self._adopt(dialog, early=False)
        self.dialog = dialog
        self.state = S.ESTABLISHED
        self.template = None  # answered: no INVITE is built from it again (memory per held call)
        self.remote_party = response.to.copy()
        self.remote_sdp = sdp_of(response)
        self.peer_allow = response.get("Allow") or self.peer_allow
        self._start_keepalive()
        if self.listener is not None:
            self.listener.leg_answered(self, self.remote_sdp)

    def _heard_failure(self, response: Response) -> None:
        self._terminated()
        if self.listener is None:
            return
        status, reason = response.status, response.reason
        if is_local(response) and status == 503:
            status, reason = 480, "Destination Unreachable"
        self.listener.leg_failed(self, status, reason)

    def _adopt(self, dialog: Dialog | None, early: bool) -> None:
        if dialog is None:
            return
        if self.host.dialog_owner(dialog) is None:
            self.host.dialog_started(dialog, self)
        if early and self.dialog is None:
            self.dialog = dialog

    def _end_unwanted(self, dialog: Dialog, response: Response) -> None:
        """A 2xx we no longer want (it crossed our CANCEL, or a second fork
        answered): ACK it, then BYE it at once."""
        self._send_ack(dialog, response, self.invite, None)
        log.debug("ending unwanted dialog {dialog!r}", dialog=dialog)
        if self.host.dialog_owner(dialog) is None:
            self.host.dialog_started(dialog, self)
        local = self.host.local_address(self.destination.transport)
        bye = dialog.new_request("BYE", local.host, local.port, local.transport.upper(),
                                 headers=[("Reason", 'SIP;cause=487;text="Call cancelled"')])
        destination = dialog.next_hop().address() if dialog.route_set else None
        self.host.start_transaction(bye, destination or self.destination, _ignore)

    def _answer_challenge(self, response: Response) -> bool:
        """Answer a 401/407 to our INVITE once, with the line's credentials."""
        credentials = self.credentials
        if (credentials is None or self._tried_auth or self.template is None
                or self.state not in (S.CALLING, S.EARLY)):
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

    # -- what the owner asks ------------------------------------------------------------------

    def _cancel(self, cause: Cause) -> None:
        """Not answered yet: CANCEL (the transaction layer holds it until the first
        provisional arrives, §9.1). The leg is over for its owner at once."""
        self._cancelled = True
        cancel = make_cancel(self.invite)  # type: ignore[arg-type]
        cancel.add("Reason", cause.reason_header)
        self.host.start_transaction(cancel, self.destination, _ignore)
        self._terminated()

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


def _ignore(response: Response) -> None:
    pass
