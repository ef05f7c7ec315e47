"""What both SIP legs share: the dialog, in-dialog requests both ways, keepalive, REFER.

A SIP leg is a `StateMachine` over `LegState`; each kind (`InboundLeg`,
`OutboundLeg`) writes its own transition table. The events common to both:

- ``request``: an in-dialog request arrived (the handler answers it by method);
- ``keepalive_failed``: a probe got 408 or 481, the far end is gone;
- ``no_ack``: our 2xx was never ACKed (§13.3.1.4).

A delayed offer (an INVITE without SDP, RFC 3261 §13.2.1) puts the offer in the 2xx
and the answer in the ACK. A leg that sent such a 2xx reports the ACK's answer with
``leg_acked``; a leg that received one holds its ACK until the owner hands it the
answer (`acknowledge`), or sends it bare after `ACK_HOLD` seconds so that the far
end's 2xx retransmissions stop.

In-dialog requests go to the first hop of the route set if there is one, else back
to the address the dialog's INVITE came from or went to. That keeps phones behind
NAT reachable; a Contact with an unresolvable host name then costs nothing.

Legs use only their `ILegHost`, never the engine.
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from phpvoip.interfaces import Cause, ILegHost, LegReply, LegState
from phpvoip.legs.refer import SIPFRAG, ReferSubscription
from phpvoip.sip.address import Address
from phpvoip.sip.dialog import Dialog, DialogError, error_response
from phpvoip.sip.errors import ParseError
from phpvoip.sip.headers import NameAddr
from phpvoip.sip.headers_nameaddr import parse_name_addr
from phpvoip.sip.message import Request, Response
from phpvoip.sip.transaction_base import is_local
from phpvoip.statemachine import StateMachine

__all__ = ["SDP", "SipLeg", "reason_text", "sdp_of", "set_body"]

log = Logger()
_numbers = itertools.count(1)

SDP = "application/sdp"
# In-dialog requests the bridge relays to the other leg; the rest are answered here.
RELAYED = frozenset(("INVITE", "UPDATE", "INFO", "MESSAGE"))
_NO_DIALOG = LegReply(481, "Call/Transaction Does Not Exist")


def sdp_of(message: Request | Response) -> bytes | None:
    """The message's body if it is SDP (RFC 3264 offers and answers)."""
    if message.body and (message.get("Content-Type") or "").split(";")[0].strip().lower() == SDP:
        return message.body
    return None


def set_body(message: Request | Response, body: bytes | None, content_type: str | None = SDP) -> None:
    if body:
        message.set("Content-Type", content_type or SDP)
        message.body = body


def reason_text(request: Request) -> str | None:
    """The text of an RFC 3326 Reason header, if the request has one."""
    value = request.get("Reason")
    if not value:
        return None
    start = value.find('text="')
    if start < 0:
        return value
    return value[start + 6 :].split('"', 1)[0]


class SipLeg(StateMachine):
    """The dialog side of a leg. Subclasses write `TABLE` and `peer_address`."""

    kind = "leg"
    # How long an ACK waits for the answer of a delayed offer before it goes bare.
    ACK_HOLD = 5.0

    def __init__(self, host: ILegHost) -> None:
        self.host = host
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
        self._answer_in_ack = False  # our 2xx carried an offer: its ACK brings the answer
        self._held_ack: tuple[Dialog, Response, Request | None] | None = None
        self._ack_timer: Any = None
        host.leg_started()

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} {self.id} {self.state.value}>"

    @property
    def peer_address(self) -> Address:
        raise NotImplementedError

    def _transport(self) -> str:
        return self.peer_address.transport

    # -- in-dialog requests we send ----------------------------------------------------

    def _destination(self) -> Address:
        dialog = self.dialog
        if dialog is not None and dialog.route_set:
            address = dialog.next_hop().address()
            if address is not None:
                return address
        return self.peer_address

    def _new_request(self, method: str, body: bytes | None = None, content_type: str | None = None,
                     headers: Any = ()) -> Request:
        local = self.host.local_address(self._transport())
        request = self.dialog.new_request(  # type: ignore[union-attr]
            method, local.host, local.port, local.transport.upper(), b"", headers
        )
        if method == "INVITE":
            self.host.add_capabilities(request)
        set_body(request, body, content_type)
        return request

    def _send(self, request: Request, on_response: Any) -> None:
        self.host.start_transaction(request, self._destination(), on_response)

    def _send_bye(self, cause: Cause) -> None:
        """BYE with an RFC 3326 Reason; the dialog ends as it goes (§15.1.1)."""
        self._release_ack(None)  # a held ACK first: the far end's 2xx must stop
        dialog = self.dialog
        if dialog is None or dialog.state.value == "terminated":
            return
        headers = [("Reason", cause.reason_header)] if cause.status is not None or cause.text else []
        bye = self._new_request("BYE", headers=headers)
        self._send(bye, _ignore_response)

    def _hang_up_established(self, cause: Cause) -> None:
        self._send_bye(cause)
        self._terminated()

    def request(
        self, method: str, body: bytes, content_type: str | None, headers: Any = ()
    ) -> defer.Deferred:
        """Send an in-dialog request for the bridge; fires with the `LegReply`."""
        if self.state is not LegState.ESTABLISHED or self.dialog is None:
            return defer.succeed(_NO_DIALOG)
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
                held = self._held_ack
                if held is not None and held[1].cseq.seq == response.cseq.seq:
                    return  # a 2xx retransmission while its ACK waits for the answer
                dialog.receive_response(response)
                if method == "INVITE" and response.status < 300 and dialog.state.value != "terminated":
                    offered = sdp_of(response) is not None
                    if offered:
                        self.remote_sdp = response.body
                    if offered and not body:
                        # A re-INVITE without SDP got an offer: the answer goes in the ACK.
                        self._hold_ack(dialog, response, request)
                    else:
                        self._send_ack(dialog, response, request, None)
            if not d.called:
                d.callback(LegReply(response.status, response.reason, response.body,
                                    response.get("Content-Type")))
            if response.status in (408, 481):
                self._event("keepalive_failed", response)

        self._send(request, answered)
        return d

    def _send_notify(self, event: str, subscription_state: str, body: bytes) -> None:
        """A NOTIFY of a REFER's progress (RFC 3515 §2.4.4); its answer is not
        awaited: a transferor that has gone simply stops hearing."""
        if self.state is not LegState.ESTABLISHED or self.dialog is None:
            return
        headers = [("Event", event), ("Subscription-State", subscription_state)]
        try:
            notify = self._new_request("NOTIFY", body, SIPFRAG, headers)
        except Exception as e:
            log.debug("cannot NOTIFY on {leg}: {error}", leg=self.id, error=e)
            return
        self._send(notify, _ignore_response)

    # -- in-dialog requests we receive ---------------------------------------------------

    def request_received(self, request: Request, transaction: Any) -> None:
        dialog = self.dialog
        try:
            dialog.receive_request(request)  # type: ignore[union-attr]
        except DialogError as e:
            transaction.respond(error_response(request, e))
            return
        self._event("request", request, transaction)

    def _serve_request(self, request: Request, transaction: Any) -> None:
        """An in-dialog request on an answered leg."""
        method = request.method
        if method == "BYE":
            transaction.respond(request.response(200))
            self._ended_by_peer(Cause(None, reason_text(request) or "Normal call clearing", "remote"))
        elif method == "OPTIONS":
            self._answer_options(request, transaction)
        elif method in RELAYED and self.listener is not None:
            self._relay(request, transaction)
        elif method == "REFER" and self.listener is not None:
            self._refer(request, transaction)
        elif method == "INVITE" or method == "UPDATE":
            transaction.respond(request.response(500))
        else:
            self._not_implemented(request, transaction)

    def _serve_early_request(self, request: Request, transaction: Any) -> None:
        """An in-dialog request before the answer (early dialog): only OPTIONS is
        served; an offer cannot be taken yet (RFC 3311 UPDATE is not supported)."""
        method = request.method
        if method == "OPTIONS":
            self._answer_options(request, transaction)
        elif method in ("INVITE", "UPDATE", "REFER"):
            transaction.respond(request.response(491 if method != "REFER" else 403))
        elif method == "BYE":
            self._bye_before_answer(request, transaction)
        else:
            self._not_implemented(request, transaction)

    def _bye_before_answer(self, request: Request, transaction: Any) -> None:
        transaction.respond(request.response(481))

    def _refuse_after_end(self, request: Request, transaction: Any) -> None:
        transaction.respond(request.response(481))

    def _answer_options(self, request: Request, transaction: Any) -> None:
        response = request.response(200)
        self.host.add_capabilities(response)
        transaction.respond(response)

    def _not_implemented(self, request: Request, transaction: Any) -> None:
        response = request.response(501)
        self.host.add_capabilities(response)
        transaction.respond(response)

    def _relay(self, request: Request, transaction: Any) -> None:
        content_type = request.get("Content-Type")
        if request.method in ("INVITE", "UPDATE") and sdp_of(request) is not None:
            self.remote_sdp = request.body
        d = defer.maybeDeferred(
            self.listener.leg_request, self, request.method, request.body, content_type, ()
        )

        def reply(answer: LegReply) -> None:
            response = request.response(answer.status, answer.reason or None)
            set_body(response, answer.body or None, answer.content_type)
            if request.method == "INVITE" and 200 <= answer.status < 300 and self.dialog is not None:
                self.host.add_contact(response, self._transport(), self.local_party)
                self.host.add_capabilities(response)
                # An offer in our 2xx to a re-INVITE without one: the ACK answers it.
                self._answer_in_ack = sdp_of(request) is None and sdp_of(response) is not None
                transaction.respond(response)
                self.dialog.answer(response, transaction.source, self.host.clock, self.host.timers,
                                   self._no_ack, send_first=False)
                return
            transaction.respond(response)
            if self.dialog is not None:
                self.dialog.response_sent(response)

        def failed(failure: Any) -> None:
            log.failure("relaying {method} failed", failure, method=request.method)
            transaction.respond(request.response(500))

        d.addCallbacks(reply, failed)

    # -- REFER (RFC 3515, blind transfer as RFC 5589) ----------------------------------------

    def _refer(self, request: Request, transaction: Any) -> None:
        try:
            target = self._refer_target(request, transaction.source)
        except _ReferRefused as refused:
            transaction.respond(request.response(refused.status, refused.reason))
            return
        referred_by = request.get("Referred-By")
        subscribed = (request.get("Refer-Sub") or "").strip().lower() != "false"
        subscription = ReferSubscription(request.cseq.seq, self._send_notify, subscribed)
        d = defer.maybeDeferred(self.listener.leg_refer, self, target, referred_by, subscription.report)

        def reply(answer: LegReply) -> None:
            response = request.response(answer.status, answer.reason or None)
            if 200 <= answer.status < 300:
                self.host.add_contact(response, self._transport(), self.local_party)
                if not subscribed:
                    response.add("Refer-Sub", "false")  # RFC 4488 §4
            transaction.respond(response)
            if 200 <= answer.status < 300:
                subscription.accepted()

        def failed(failure: Any) -> None:
            log.failure("REFER on {leg} failed", failure, leg=self.id)
            transaction.respond(request.response(500))

        d.addCallbacks(reply, failed)

    def _refer_target(self, request: Request, source: Address | None) -> Any:
        """The Refer-To URI, once the REFER is found acceptable (§2.4.2 of RFC 3515:
        "A REFER request ... MUST contain exactly one Refer-To header field")."""
        values = request.get_all("Refer-To")
        if len(values) != 1:
            raise _ReferRefused(400, "Exactly One Refer-To Required")
        try:
            target = parse_name_addr(values[0]).uri
        except (ParseError, ValueError):
            raise _ReferRefused(400, "Bad Refer-To") from None
        if target.scheme not in ("sip", "sips", "tel"):
            raise _ReferRefused(416, "Unsupported Refer-To Scheme")
        if target.headers and "replaces" in target.headers.lower():
            raise _ReferRefused(501, "Attended Transfer (Replaces) Not Supported")
        # The dialog's tags show the REFER belongs to this call; the source shows
        # it comes from its party (or the proxy in its route), not from someone who
        # learnt Call-ID and tags.
        if source is not None and source.host not in self._peer_hosts():
            raise _ReferRefused(403, "REFER From An Unexpected Source")
        return target

    def _peer_hosts(self) -> set[str]:
        """Where the party's requests may come from: itself, or the first hop of
        the route set, where our own requests to it go."""
        return {self.peer_address.host, self._destination().host}

    def ack_received(self, ack: Request) -> None:
        """The ACK of our 2xx. When that 2xx carried an offer, the ACK's body is the
        answer (RFC 3264 §5): the owner hears it (None when the ACK had no SDP)."""
        dialog = self.dialog
        if dialog is None:
            return
        if dialog.receive_request(ack) and self._answer_in_ack:
            self._answer_in_ack = False
            sdp = sdp_of(ack)
            if sdp is not None:
                self.remote_sdp = sdp
            if self.listener is not None:
                self.listener.leg_acked(self, sdp)

    # -- ACKs we send --------------------------------------------------------------------------

    def _send_ack(self, dialog: Dialog, response: Response, invite: Request | None,
                  sdp: bytes | None) -> None:
        """ACK a 2xx to our INVITE (§13.2.2.4), with `sdp` as the answer to an offer
        the 2xx carried."""
        local = self.host.local_address(self._transport())
        headers = [("Content-Type", SDP)] if sdp else []
        ack = dialog.build_ack(response, local.host, local.port, local.transport.upper(),
                               body=sdp or b"", headers=headers, invite=invite)
        destination = self.peer_address
        if dialog.route_set:
            destination = dialog.next_hop().address() or destination
        dialog.send_ack(ack, destination)

    def _hold_ack(self, dialog: Dialog, response: Response, invite: Request | None) -> None:
        """A 2xx brought an offer our INVITE did not make: its ACK must carry the
        answer (RFC 3261 §13.2.1), which the owner gets from the other party."""
        self._release_ack(None)
        self._held_ack = (dialog, response, invite)
        self._ack_timer = self.host.clock.callLater(self.ACK_HOLD, self._ack_hold_expired)

    def acknowledge(self, sdp: bytes | None) -> None:
        """Send the held ACK with the answer `sdp` (None: bare); nothing if none is held."""
        self._release_ack(sdp)

    def _ack_hold_expired(self) -> None:
        self._ack_timer = None
        log.info("{leg} of call {callID}: no answer for the offer in the 2xx after {seconds}s;"
                 " ACK sent without one", leg=self.id, callID=self.dialog.call_id if self.dialog else "",
                 seconds=self.ACK_HOLD)
        self._release_ack(None)

    def _release_ack(self, sdp: bytes | None) -> None:
        held, self._held_ack = self._held_ack, None
        timer, self._ack_timer = self._ack_timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if held is None:
            return
        dialog, response, invite = held
        if dialog.state.value == "terminated":
            return
        self._send_ack(dialog, response, invite, sdp)

    # -- keepalive ----------------------------------------------------------------------------

    def _start_keepalive(self) -> None:
        interval = self.host.keepalive_interval
        if interval > 0:
            self._keepalive = self.host.clock.callLater(interval, self._probe)

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None and self._keepalive.active():
            self._keepalive.cancel()
        self._keepalive = None

    def _probe(self) -> None:
        """Ask the far end whether it still knows the call (OPTIONS, or INFO for
        peers whose Allow lists INFO but not OPTIONS). Only a timeout, 481, or a
        transport error (the layer's own 503: e.g. ICMP port unreachable, the
        process is gone) means it is gone: any answer from it shows it is alive."""
        self._keepalive = None
        if self.state is not LegState.ESTABLISHED or self.dialog is None:
            return
        allow = {m.strip().upper() for m in self.peer_allow.split(",")}
        method = "INFO" if "INFO" in allow and "OPTIONS" not in allow else "OPTIONS"
        try:
            probe = self._new_request(method)
        except Exception:
            return

        def answered(response: Response) -> None:
            if response.status < 200 or self.state is not LegState.ESTABLISHED:
                return
            if response.status in (408, 481) or (response.status == 503 and is_local(response)):
                self._event("keepalive_failed", response)
            else:
                self._start_keepalive()

        self._send(probe, answered)

    def _far_end_gone(self, response: Response) -> None:
        """The far end did not answer (408), cannot be reached (local 503) or no
        longer knows the dialog (481): the call is over. Unless it said 481 it
        still gets a BYE with the Reason, since a peer deaf only to our probes
        would otherwise keep the call."""
        text = "Far end unreachable" if response.status == 503 else "No answer to keepalive"
        cause = Cause(408, text, "timeout")
        log.info("{leg} of call {callID}: far end gone ({status})", leg=self.id,
                 callID=self.dialog.call_id if self.dialog else "", status=response.status)
        if response.status != 481:
            self._send_bye(cause)
        elif self.dialog is not None:
            self.dialog.terminate()
        self._ended_by_peer(cause)

    def _no_ack(self) -> None:
        self._event("no_ack")

    def _ack_never_came(self) -> None:
        """Our 2xx was never ACKed (§13.3.1.4): end the dialog with a BYE."""
        cause = Cause(408, "No ACK for 2xx", "timeout")
        self._send_bye(cause)
        self._ended_by_peer(cause)

    def _ended_by_peer(self, cause: Cause) -> None:
        self._terminated()
        if self.listener is not None:
            self.listener.leg_ended(self, cause)

    def _terminated(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.state = LegState.TERMINATED
        self._stop_keepalive()
        self._release_ack(None)
        self.host.leg_finished(self)


class _ReferRefused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def _ignore_response(response: Response) -> None:
    """Nothing waits on this answer (a BYE's, a NOTIFY's): the outcome is the same."""
