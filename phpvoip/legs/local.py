"""A pair of legs joined by method calls, for terminal applications.

What one side *does* (dial, progress, answer, acknowledge, reject, hang up,
request) the other side's listener *hears* (on_invite, leg_progress, leg_answered,
leg_acked, leg_failed, leg_ended, leg_request), so an application and the bridge can treat each other like
any SIP endpoint without a packet being sent (DESIGN.md §1, "Terminal
applications"). Each half is a state machine; its ``peer_*`` events are what the
other half did, and move both halves in step.

An application that receives a call keeps the app side and hands the engine side to
the engine from ``callout()``; one that places a call dials its app side and hands
the engine side over from ``callin()``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from phpvoip.interfaces import Cause, ICallLeg, LegReply, LegState
from phpvoip.sip.headers import NameAddr
from phpvoip.statemachine import StateMachine

__all__ = ["LocalLeg", "local_pair"]

_ids = itertools.count(1)
S = LegState


@implementer(ICallLeg)
class LocalLeg(StateMachine):
    """One half of a local pair. `peer` is the other half.

        idle ─(dial / peer_dial)→ calling ─(progress)→ early ─(answer)→ established
          └──────────┴──────────(reject / hangup, either side)────────────┴─→ terminated
    """

    _RINGING = {
        "dial": "_ignore",
        "progress": "_send_progress",
        "answer": "_send_answer",
        "reject": "_send_refusal",
        "hangup": "_hang_up_early",
        "peer_progress": "_hear_progress",
        "peer_answer": "_hear_answer",
        "peer_reject": "_hear_refusal",
    }
    TABLE = {
        S.IDLE: {
            "dial": "_ring_peer",
            "peer_dial": "_rung",
            "reject": "_send_refusal",
            "hangup": "_hang_up_early",
            "peer_reject": "_hear_refusal",
        },
        S.CALLING: _RINGING,
        S.EARLY: _RINGING,
        S.ESTABLISHED: {
            "dial": "_ignore",
            "hangup": "_hang_up",
            "peer_hangup": "_hear_hangup",
        },
        S.TERMINATED: {
            name: "_ignore"
            for name in ("dial", "progress", "answer", "reject", "hangup",
                         "peer_progress", "peer_answer", "peer_reject", "peer_hangup")
        },
    }

    def __init__(self, local_party: NameAddr | None, remote_party: NameAddr | None, label: str) -> None:
        self.id = f"local-{next(_ids)}-{label}"
        self.state = S.IDLE
        self.listener: Any = None
        self.local_party = local_party
        self.remote_party = remote_party
        self.remote_sdp: bytes | None = None
        self.offer: bytes | None = None
        self.peer: LocalLeg = self  # replaced by local_pair()
        # Called when the other side dials this one (the application's "incoming call").
        self.on_invite: Callable[[LocalLeg], None] | None = None

    def __repr__(self) -> str:
        return f"<LocalLeg {self.id} {self.state.value}>"

    @property
    def terminated(self) -> bool:
        return self.state is S.TERMINATED

    # -- ICallLeg -----------------------------------------------------------------

    def dial(self) -> None:
        """Ring the other side: it becomes an incoming call holding our offer."""
        self._event("dial")

    def progress(self, status: int, reason: str, sdp: bytes | None = None) -> None:
        self._event("progress", status, reason, sdp)

    def answer(self, sdp: bytes | None = None) -> None:
        self._event("answer", sdp)

    def reject(self, status: int, reason: str, headers: Any = ()) -> None:
        self._event("reject", status, reason)

    def hangup(self, cause: Cause) -> None:
        self._event("hangup", cause)

    def acknowledge(self, sdp: bytes | None) -> None:
        """The ACK of a delayed offer: the side that answered with an offer hears
        the answer (`leg_acked`). There is no ACK to hold, so no timer either."""
        if self.state is S.ESTABLISHED:
            if sdp is not None:
                self.peer.remote_sdp = sdp
            self.peer._tell("leg_acked", sdp)

    def request(
        self, method: str, body: bytes, content_type: str | None, headers: Any = ()
    ) -> defer.Deferred:
        listener = self.peer.listener
        if self.state is not S.ESTABLISHED or listener is None:
            return defer.succeed(LegReply(481, "Call/Transaction Does Not Exist"))
        return defer.maybeDeferred(listener.leg_request, self.peer, method, body, content_type, headers)

    # -- what this side does ---------------------------------------------------------

    def _ring_peer(self) -> None:
        self.state = S.CALLING
        self.peer._event("peer_dial", self.offer)

    def _send_progress(self, status: int, reason: str, sdp: bytes | None) -> None:
        self.state = S.EARLY
        self.peer._event("peer_progress", status, reason, sdp)

    def _send_answer(self, sdp: bytes | None) -> None:
        self.state = S.ESTABLISHED
        self.peer._event("peer_answer", sdp)

    def _send_refusal(self, status: int, reason: str) -> None:
        self.state = S.TERMINATED
        self.peer._event("peer_reject", status, reason)

    def _hang_up_early(self, cause: Cause) -> None:
        # Before answer a hang-up is a refusal from the other side's point of view.
        self._send_refusal(cause.status or 487, cause.text or "Request Terminated")

    def _hang_up(self, cause: Cause) -> None:
        self.state = S.TERMINATED
        self.peer._event("peer_hangup", cause)

    # -- what the other side did ------------------------------------------------------

    def _rung(self, offer: bytes | None) -> None:
        self.state = S.CALLING
        self.remote_sdp = offer
        if self.on_invite is not None:
            self.on_invite(self)

    def _hear_progress(self, status: int, reason: str, sdp: bytes | None) -> None:
        self.state = S.EARLY
        if sdp is not None:
            self.remote_sdp = sdp
        self._tell("leg_progress", status, reason, sdp)

    def _hear_answer(self, sdp: bytes | None) -> None:
        self.state = S.ESTABLISHED
        if sdp is not None:
            self.remote_sdp = sdp
        self._tell("leg_answered", sdp)

    def _hear_refusal(self, status: int, reason: str) -> None:
        self.state = S.TERMINATED
        self._tell("leg_failed", status, reason)

    def _hear_hangup(self, cause: Cause) -> None:
        self.state = S.TERMINATED
        self._tell("leg_ended", cause)

    def _tell(self, event: str, *args: Any) -> None:
        listener = self.listener
        if listener is not None:
            getattr(listener, event)(self, *args)


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
