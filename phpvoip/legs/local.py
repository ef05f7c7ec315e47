"""A pair of legs joined by method calls, for terminal applications.

What one side *does* (answer, progress, reject, hang up, request) the other side's
listener *hears* (leg_answered, leg_progress, leg_failed, leg_ended, leg_request), so
an application and the bridge can treat each other like any SIP endpoint without a
packet being sent (DESIGN.md §1, "Terminal applications").
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from phpvoip.interfaces import Cause, ICallLeg, LegReply, LegState
from phpvoip.sip.headers import NameAddr

__all__ = ["LocalLeg", "local_pair"]

_ids = itertools.count(1)


@implementer(ICallLeg)
class LocalLeg:
    """One half of a local pair. `peer` is the other half."""

    def __init__(self, local_party: NameAddr | None, remote_party: NameAddr | None, label: str) -> None:
        self.id = f"local-{next(_ids)}-{label}"
        self.state = LegState.IDLE
        self.listener: Any = None
        self.local_party = local_party
        self.remote_party = remote_party
        self.remote_sdp: bytes | None = None
        self.offer: bytes | None = None
        self.peer: LocalLeg = self  # replaced by local_pair()
        # Called when the other side dials this one (the application's "incoming call").
        self.on_invite: Callable[[LocalLeg], None] | None = None

    def __repr__(self) -> str:
        return f"<LocalLeg {self.id} {self.state}>"

    @property
    def terminated(self) -> bool:
        return self.state == LegState.TERMINATED

    # -- actions (ICallLeg) ----------------------------------------------------

    def dial(self) -> None:
        """Ring the other side: it becomes an incoming call holding our offer."""
        if self.state != LegState.IDLE:
            return
        peer = self.peer
        self.state = peer.state = LegState.CALLING
        peer.remote_sdp = self.offer
        if peer.on_invite is not None:
            peer.on_invite(peer)

    def progress(self, status: int, reason: str, sdp: bytes | None = None) -> None:
        if self.state not in (LegState.IDLE, LegState.CALLING, LegState.EARLY):
            return
        self.state = self.peer.state = LegState.EARLY
        if sdp is not None:
            self.peer.remote_sdp = sdp
        self._tell_peer("leg_progress", status, reason, sdp)

    def answer(self, sdp: bytes | None = None) -> None:
        if self.state not in (LegState.IDLE, LegState.CALLING, LegState.EARLY):
            return
        self.state = self.peer.state = LegState.ESTABLISHED
        if sdp is not None:
            self.peer.remote_sdp = sdp
        self._tell_peer("leg_answered", sdp)

    def reject(self, status: int, reason: str, headers: Any = ()) -> None:
        if self.terminated or self.state == LegState.ESTABLISHED:
            return
        self._end_both()
        self._tell_peer("leg_failed", status, reason)

    def hangup(self, cause: Cause) -> None:
        if self.terminated:
            return
        was_established = self.state == LegState.ESTABLISHED
        self._end_both()
        if was_established:
            self._tell_peer("leg_ended", cause)
        else:
            # Before answer a hang-up is a refusal from the other side's point of view.
            self._tell_peer("leg_failed", cause.status or 487, cause.text or "Request Terminated")

    def request(
        self, method: str, body: bytes, content_type: str | None, headers: Any = ()
    ) -> defer.Deferred:
        listener = self.peer.listener
        if self.state != LegState.ESTABLISHED or listener is None:
            return defer.succeed(LegReply(481, "Call/Transaction Does Not Exist"))
        return defer.maybeDeferred(listener.leg_request, self.peer, method, body, content_type, headers)

    # -- helpers -----------------------------------------------------------------

    def _end_both(self) -> None:
        self.state = self.peer.state = LegState.TERMINATED

    def _tell_peer(self, event: str, *args: Any) -> None:
        listener = self.peer.listener
        if listener is not None:
            getattr(listener, event)(self.peer, *args)


def local_pair(
    engine_party: NameAddr | None = None, app_party: NameAddr | None = None
) -> tuple[LocalLeg, LocalLeg]:
    """Two joined legs: ``(engine_side, app_side)``.

    The engine side is what the bridge owns; the application keeps the other and
    sets its `listener` (and `on_invite` to hear incoming calls)."""
    engine_side = LocalLeg(engine_party, app_party, "engine")
    app_side = LocalLeg(app_party, engine_party, "app")
    engine_side.peer, app_side.peer = app_side, engine_side
    return engine_side, app_side
