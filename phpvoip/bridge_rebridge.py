"""Re-bridging: keep one party, dial a new one, and join them once it answers:
`Rebridging`, part of `phpvoip.bridge.Bridge` (the operation transfer, queue pickup
and IVR exits are made of). Until the new leg answers the call stays as it was, so
a failed transfer leaves the parties talking.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from phpvoip.bridge_media import SDP, media_error
from phpvoip.bridge_state import B
from phpvoip.callrecord import CallRecord
from phpvoip.events import CallTransferred
from phpvoip.interfaces import Cause, LegReply
from phpvoip.sip.sdp import same_media, with_direction

__all__ = ["TRANSFERRED", "RebridgeFailed", "Rebridging", "note_call_ids"]

log = Logger()

TRANSFERRED = Cause(None, "Call transferred", "local")


class RebridgeFailed(Exception):
    """The new leg of a re-bridge did not answer: `status` and `reason` say why.

    `failures` maps each number tried to its own ``(status, reason)`` when an
    application rang several (`IAppCall.bridge`); empty otherwise."""

    def __init__(self, status: int, reason: str,
                 failures: dict[str, tuple[int, str]] | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.failures = dict(failures or {})


def note_call_ids(record: CallRecord, leg: Any) -> None:
    """Add the SIP Call-IDs a just-dialled leg uses (each branch's, for a fork; none
    for a local leg) to the record, so that its messages can be found by call."""
    invite = getattr(leg, "invite", None)
    if invite is not None:
        if invite.call_id not in record.sip_call_ids:
            record.sip_call_ids.append(invite.call_id)
        return
    for branch in getattr(leg, "branches", ()):
        note_call_ids(record, branch)


class Rebridging:
    """The bridge's re-bridge handlers (states ANSWERED -> REBRIDGING -> ANSWERED).
    Mixed into `Bridge`, whose attributes and helpers it uses."""

    state: Any
    record: Any
    clock: Any
    events: Any
    parties: list[Any]
    kept: Any
    leaving: Any
    joining: Any
    session: Any
    ring_timeout: float
    _sides: dict[Any, str]
    _sdp_to: dict[Any, bytes | None]
    _continuing: set[Any] | None
    _joined_sides: dict[Any, str] | None
    _rebridged: defer.Deferred | None
    _on_join_progress: Any
    _join_info: tuple[str, str]
    _join_timer: Any

    def _cannot_rebridge(self, keep: Any, joining: Any, *rest: Any) -> defer.Deferred:
        status = 481 if self.state is B.ENDED else 491
        reason = "Call Does Not Exist" if status == 481 else "Request Pending"
        # The new leg was built for this call and is never dialled: let it go.
        joining.hangup(Cause(status, reason, "local"))
        return defer.fail(RebridgeFailed(status, reason))

    def _start_rebridge(self, keep: Any, joining: Any, by: str, module: str,
                        ring_timeout: float | None, on_progress: Any) -> defer.Deferred:
        if keep is not self.parties[0] and keep is not self.parties[1]:
            joining.hangup(Cause(500, "Not a party of the call", "local"))
            return defer.fail(ValueError(f"{keep!r} is not a party of {self!r}"))
        leaving = self.other(keep)
        self.state = B.REBRIDGING
        self.kept, self.leaving, self.joining = keep, leaving, joining
        if self._joined_sides is None:
            self._joined_sides = {}
        self._joined_sides[joining] = self.side_of(leaving)
        self._join_info = (by, module)
        self._on_join_progress = on_progress
        self._rebridged = d = defer.Deferred(canceller=self._withdraw_joining)
        joining.listener = self
        # The new party is offered what the kept party last offered or answered,
        # as a fresh, un-held session (its hold may have been for the old party).
        offer = keep.remote_sdp
        if self.session is not None:
            self._side(joining)  # the next letter: "c", "d"…
        self._join_timer = self.clock.callLater(
            self.ring_timeout if ring_timeout is None else ring_timeout, self._event, "ring_timeout"
        )
        self._cross(keep, joining, with_direction(offer) if offer else None, "offer",
                    lambda carried: self._dial_joining(joining, carried),
                    lambda failure: self._joining_refused(joining, failure))
        return d

    def _dial_joining(self, joining: Any, offer: bytes | None) -> None:
        if self.joining is not joining:
            return  # the re-bridge ended while the engine was asked
        joining.offer = offer
        joining.dial()
        note_call_ids(self.record, joining)

    def _joining_refused(self, joining: Any, failure: Failure) -> None:
        """The engine refused the offer for the new leg: it is never dialled."""
        if self.joining is not joining:
            return
        status, reason = media_error(failure)
        joining.listener = None
        joining.hangup(Cause(status, reason, "local"))
        self._joining_failed(joining, status, reason)

    def _joining_progress(self, leg: Any, status: int, reason: str, sdp: bytes | None) -> None:
        if self._on_join_progress is not None and status > 100:
            self._on_join_progress(status, reason)

    def _joined(self, leg: Any, sdp: bytes | None) -> None:
        self._cancel_join_timer()
        keep, leaving = self.kept, self.leaving
        self.state = B.ANSWERED
        self.parties = [keep, leg]
        self.kept = self.leaving = self.joining = None
        by, module = self._join_info
        d, self._rebridged = self._rebridged, None
        record = self.record
        target = getattr(getattr(leg, "remote_party", None), "uri", None)
        target_text = (target.user or target.host) if target is not None else ""
        record.transfers.append(target_text)
        if module:
            # The new party takes the side of the one it replaced: a transfer by
            # the caller puts the target where the caller was.
            if self.side_of(leg) == "caller":
                record.inbound_module = module
            else:
                record.outbound_module = module
        # The transferor hears "200 OK" (NOTIFY) before its BYE.
        d.callback(leg)  # type: ignore[union-attr]
        if leaving is not None:
            leaving.listener = None
            leaving.hangup(TRANSFERRED)
        self.events.publish(CallTransferred(record, self.clock.seconds(), target_text, by, module))
        if self.session is None:
            self._offer_new_media(keep, leg, sdp)
            return
        # The new party's answer pairs it with the kept party in the engine; what
        # the kept party would now see decides whether it is re-INVITEd.
        self._cross(leg, keep, sdp, "answer", lambda seen: self._offer_new_media(keep, leg, seen),
                    lambda failure: self._media_lost(failure), carry=False)

    def _offer_new_media(self, keep: Any, joined: Any, sdp: bytes | None) -> None:
        """Re-INVITE the kept party with the new party's SDP when the media changed,
        and tell the new party if the kept party's answer differs from what it got."""
        if sdp is None or same_media(sdp, self._sdp_to.get(keep)):
            return
        if self._continuing is None:
            self._continuing = set()
        self._continuing.add(keep)
        offer = self._carry_sdp(keep, sdp)

        def answered(reply: LegReply) -> None:
            if not 200 <= reply.status < 300 or reply.content_type != SDP or not reply.body:
                log.info("call {call}: re-INVITE after re-bridge answered {status}",
                         call=self.record.id, status=reply.status)
                return
            if self.state is not B.ANSWERED:
                return
            if self.session is None:
                if not same_media(reply.body, self._sdp_to.get(joined)):
                    joined.request("INVITE", self._carry_sdp(joined, reply.body), SDP)
                return

            def tell_joined(seen: bytes | None) -> None:
                if seen is not None and not same_media(seen, self._sdp_to.get(joined)):
                    joined.request("INVITE", self._carry_sdp(joined, seen), SDP)

            self._cross(keep, joined, reply.body, "answer", tell_joined, self._media_lost, carry=False)

        keep.request("INVITE", offer, SDP).addCallback(answered).addErrback(
            lambda f: log.failure("re-INVITE after re-bridge failed", f, call=self.record.id)
        )

    def _joining_failed(self, leg: Any, status: int, reason: str) -> None:
        self._cancel_join_timer()
        leg.listener = None
        keep, leaving = self.kept, self.leaving
        self.kept = self.leaving = self.joining = None
        d, self._rebridged = self._rebridged, None
        if leaving is None:
            # The party being replaced has gone: the kept one is alone.
            self.parties = [keep]
            keep.hangup(Cause(status, reason, "local"))
            self._end(200, f"transfer failed: {status} {reason}", "switch", cause_status=status)
        else:
            self.state = B.ANSWERED  # back to how the call was
            self.parties = [keep, leaving]
        self._drop_side(leg)
        d.errback(RebridgeFailed(status, reason))  # type: ignore[union-attr]

    def _joining_not_answered(self) -> None:
        self._join_timer = None
        self._give_up_joining(480, "No Answer")

    def _withdraw_joining(self, d: defer.Deferred) -> None:
        """Whoever asked for the re-bridge cancelled it (a queue's caller pressed
        the exit digit while an agent rang). Only while it is still dialling; the
        Deferred then fails as the ring timeout's does, with 487."""
        if d is self._rebridged:
            self._event("stop_joining")

    def _joining_withdrawn(self) -> None:
        self._give_up_joining(487, "Request Terminated")

    def _give_up_joining(self, status: int, reason: str) -> None:
        """Stop dialling the new party (CANCEL); the call goes back to how it was."""
        joining = self.joining
        joining.listener = None
        joining.hangup(Cause(status, reason, "local"))
        self._joining_failed(joining, status, reason)

    def _kept_ended(self, leg: Any, cause: Cause) -> None:
        joining, leaving = self.joining, self.leaving
        self._stop_rebridge()
        if leaving is not None:
            leaving.hangup(cause)
        joining.hangup(cause)
        self._end(200, cause.text or "Normal call clearing", self._hung_up_by(leg, cause),
                  cause_status=cause.status)

    def _leaving_ended(self, leg: Any, cause: Cause) -> None:
        """The party being replaced hung up (a transferor usually does once its
        REFER is accepted): the kept party waits for the new one alone."""
        leg.listener = None
        self.leaving = None

    def _relay_kept_request(self, leg: Any, method: str, body: bytes, content_type: str | None,
                            headers: Any) -> defer.Deferred:
        if self.leaving is None:
            return defer.succeed(LegReply(491 if method in ("INVITE", "UPDATE") else 481))
        return self._relay_request(leg, method, body, content_type, headers)

    def _hang_up_rebridging(self, cause: Cause) -> None:
        keep, leaving, joining = self.kept, self.leaving, self.joining
        self._stop_rebridge()
        for leg in (joining, keep, leaving):
            if leg is not None:
                leg.hangup(cause)
        self._end(200, cause.text, "switch", cause_status=cause.status)

    def _stop_rebridge(self) -> None:
        """The call ends while the new leg is dialled: it is CANCELled, so the
        re-bridge fails as its INVITE does, "487 Request Terminated". Status and
        reason go verbatim into a transferor's NOTIFY as a sipfrag status line
        (RFC 3515 §2.4.5), so the reason is that status's phrase, not the text of
        why the call ended (which made "SIP/2.0 487 Normal call clearing")."""
        self._cancel_join_timer()
        if self.joining is not None:
            self.joining.listener = None
        d, self._rebridged = self._rebridged, None
        if d is not None:
            d.errback(RebridgeFailed(487, "Request Terminated"))
