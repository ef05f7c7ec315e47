"""Parallel forking: one outbound leg that rings several contacts at once.

The registrar hands the engine a `ForkLeg` over the outbound legs of a user's
contacts. To the bridge it is one leg; underneath, every branch is dialled with the
same offer. The first 2xx wins: the other branches are hung up (CANCEL before
answer, BYE for a 2xx that raced in) with Reason ``SIP;cause=200;text="Call
completed elsewhere"`` (RFC 3326), and from then on the fork only relays between
the bridge and the winner.

Provisional responses are relayed as they come, except that a repeat of the last
relayed status without new early media is dropped, and only the first branch
that sent early media (SDP in an 18x) has its SDP relayed: the caller's one early
dialog cannot follow several.

When every branch has failed, the caller hears the best failure (RFC 3261 §16.7
step 6): a 6xx if any, else the lowest class, with 4xx answers that help a retry
(401, 407, 415, 420, 484) preferred, then the first. Branches that never got an
answer from their phone (408 timeout, 503 unreachable) do not count; when no
branch got one, the caller hears 480.

    state:   idle ─(dial)→ calling ─(first 18x)→ early ─(first 2xx)→ established ─→ terminated
                            └──────────────(all branches failed / hangup)──────────────┘

The fork is a state machine like the legs; its ``branch_*`` events are what its
branches report.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from phpvoip.interfaces import Cause, ICallLeg, ICallLegListener, LegReply, LegState
from phpvoip.statemachine import StateMachine

__all__ = ["ForkLeg", "best_failure", "COMPLETED_ELSEWHERE"]

log = Logger()
_ids = itertools.count(1)

COMPLETED_ELSEWHERE = Cause(200, "Call completed elsewhere", "local")
NO_ANSWER_STATUSES = frozenset((408, 503))
# §16.7 step 6: 4xx that give the caller something to retry with.
_HELPFUL_4XX = (401, 407, 415, 420, 484)


def best_failure(failures: Sequence[tuple[int, str]]) -> tuple[int, str]:
    """The response to give the caller when every branch failed (§16.7 step 6).

    `failures` are ``(status, reason)`` in the order they arrived."""
    answered = [f for f in failures if f[0] not in NO_ANSWER_STATUSES]
    if not answered:
        return 480, "Temporarily Unavailable"
    # §16.7: "the proxy MUST choose from the 6xx class responses if any exist"
    six = [f for f in answered if f[0] >= 600]
    if six:
        return six[0]
    # "If no 6xx class responses are present, the proxy SHOULD choose from the
    # lowest response class stored in the response context."
    lowest = min(f[0] // 100 for f in answered)
    chosen = [f for f in answered if f[0] // 100 == lowest]
    if lowest == 4:
        for status in _HELPFUL_4XX:
            for f in chosen:
                if f[0] == status:
                    return f
    return chosen[0]


S = LegState


@implementer(ICallLeg, ICallLegListener)
class ForkLeg(StateMachine):
    """An outbound leg made of `branches` (outbound `ICallLeg`s, not dialled yet),
    rung in parallel in the given order; listens to each of them."""

    kind = "out"

    _RINGING = {
        "dial": "_ignore",
        "hangup": "_cancel_branches",
        "branch_progress": "_relay_progress",
        "branch_answered": "_take_winner",
        "branch_failed": "_branch_failed",
        "branch_ended": "_loser_ended",
    }
    TABLE = {
        S.IDLE: {"dial": "_dial_branches", "hangup": "_cancel_branches"},
        S.CALLING: _RINGING,
        S.EARLY: _RINGING,
        S.ESTABLISHED: {
            "dial": "_ignore",
            "hangup": "_hang_up_winner",
            "branch_progress": "_ignore",  # a late 18x of a losing branch
            "branch_answered": "_end_late_answer",
            "branch_failed": "_loser_failed",
            "branch_ended": "_branch_ended",
        },
        S.TERMINATED: {
            "dial": "_ignore",
            "hangup": "_ignore",
            "branch_progress": "_ignore",
            "branch_answered": "_end_late_answer",  # crossed our CANCEL
            "branch_failed": "_loser_failed",
            "branch_ended": "_loser_ended",
        },
    }

    def __init__(self, branches: Sequence[Any], label: str = "") -> None:
        if not branches:
            raise ValueError("a fork needs at least one branch")
        self.id = f"fork-{next(_ids)}{'-' + label if label else ''}"
        self.state = S.IDLE
        self.listener: Any = None
        self.branches = list(branches)
        self.offer: bytes | None = None
        self.remote_sdp: bytes | None = None
        self.winner: Any = None
        self.failures: list[tuple[int, str]] = []
        self.outcomes: dict[int, tuple[int, str]] = {}  # branch index -> its own failure
        self._live = set(range(len(self.branches)))  # indexes still ringing
        self._early: Any = None  # the branch whose early media is relayed
        self._last_progress: int | None = None
        for branch in self.branches:
            branch.listener = self

    def __repr__(self) -> str:
        return f"<ForkLeg {self.id} {self.state.value} branches={len(self.branches)}>"

    # -- what the bridge sees ---------------------------------------------------------

    @property
    def local_party(self) -> Any:
        return (self.winner or self.branches[0]).local_party

    @property
    def remote_party(self) -> Any:
        return (self.winner or self.branches[0]).remote_party

    @property
    def max_forwards(self) -> int:
        return getattr(self.branches[0], "max_forwards", 70)

    @max_forwards.setter
    def max_forwards(self, value: int) -> None:
        # The engine lowers Max-Forwards on the leg it is given; each branch
        # carries the request on, so each gets the value.
        for branch in self.branches:
            if hasattr(branch, "max_forwards"):
                branch.max_forwards = value

    def dial(self) -> None:
        self._event("dial")

    def hangup(self, cause: Cause) -> None:
        """Before answer: cancel every branch; after: hang up the winner."""
        self._event("hangup", cause)

    def request(
        self, method: str, body: bytes, content_type: str | None, headers: Any = ()
    ) -> defer.Deferred:
        if self.winner is None or self.state is not S.ESTABLISHED:
            return defer.succeed(LegReply(481, "Call/Transaction Does Not Exist"))
        return defer.maybeDeferred(self.winner.request, method, body, content_type, headers)

    def progress(self, status: int, reason: str, sdp: bytes | None = None) -> None:
        raise TypeError("a fork is an outbound leg: it sends no provisional responses")

    def answer(self, sdp: bytes | None = None) -> None:
        raise TypeError("a fork is an outbound leg: it answers nothing")

    def reject(self, status: int, reason: str, headers: Any = ()) -> None:
        raise TypeError("a fork is an outbound leg: it rejects nothing")

    def acknowledge(self, sdp: bytes | None) -> None:
        """The answer for the winner's held ACK (a delayed offer)."""
        if self.winner is not None:
            self.winner.acknowledge(sdp)

    # -- what the branches report (ICallLegListener) ------------------------------------------

    def leg_progress(self, branch: Any, status: int, reason: str, sdp: bytes | None) -> None:
        self._event("branch_progress", branch, status, reason, sdp)

    def leg_answered(self, branch: Any, sdp: bytes | None) -> None:
        self._event("branch_answered", branch, sdp)

    def leg_failed(self, branch: Any, status: int, reason: str) -> None:
        self._event("branch_failed", branch, status, reason)

    def leg_acked(self, branch: Any, sdp: bytes | None) -> None:
        """A branch's far end ACKed a 2xx with an offer (after a re-INVITE without SDP)."""
        if branch is self.winner and self.listener is not None:
            self.listener.leg_acked(self, sdp)

    def leg_ended(self, branch: Any, cause: Cause) -> None:
        self._event("branch_ended", branch, cause)

    def leg_request(
        self, branch: Any, method: str, body: bytes, content_type: str | None, headers: Any
    ) -> defer.Deferred:
        listener = self.listener
        if branch is not self.winner or listener is None or self.state is not S.ESTABLISHED:
            return defer.succeed(LegReply(481, "Call/Transaction Does Not Exist"))
        return defer.maybeDeferred(listener.leg_request, self, method, body, content_type, headers)

    def leg_refer(self, branch: Any, target: Any, referred_by: Any, report: Any) -> Any:
        listener = self.listener
        if branch is not self.winner or listener is None or self.state is not S.ESTABLISHED:
            return LegReply(481, "Call/Transaction Does Not Exist")
        return listener.leg_refer(self, target, referred_by, report)

    # -- handlers --------------------------------------------------------------------------------

    def _index(self, branch: Any) -> int:
        for i, b in enumerate(self.branches):
            if b is branch:
                return i
        raise ValueError(f"{branch!r} is not a branch of {self!r}")

    def _dial_branches(self) -> None:
        self.state = S.CALLING
        for branch in list(self.branches):
            if self.state is S.TERMINATED or self.winner is not None:
                break  # a branch failed or answered while we were still dialling
            branch.offer = self.offer
            branch.dial()

    def _cancel_branches(self, cause: Cause) -> None:
        self.state = S.TERMINATED
        for index in sorted(self._live):
            self.branches[index].hangup(cause)
        self._live.clear()

    def _hang_up_winner(self, cause: Cause) -> None:
        self.state = S.TERMINATED
        self.winner.hangup(cause)

    def _relay_progress(self, branch: Any, status: int, reason: str, sdp: bytes | None) -> None:
        if sdp is not None:
            if self._early is None:
                self._early = branch
            elif self._early is not branch:
                sdp = None
        if status == self._last_progress and sdp is None:
            return
        self._last_progress = status
        if status > 100:
            self.state = S.EARLY
        if sdp is not None:
            self.remote_sdp = sdp
        self._tell("leg_progress", status, reason, sdp)

    def _take_winner(self, branch: Any, sdp: bytes | None) -> None:
        index = self._index(branch)
        self.winner = branch
        self._live.discard(index)
        self.state = S.ESTABLISHED
        self.remote_sdp = sdp
        for other in sorted(self._live):
            self.branches[other].hangup(COMPLETED_ELSEWHERE)
        self._live.clear()
        log.debug("fork {id}: branch {branch} answered", id=self.id, branch=getattr(branch, "id", index))
        self._tell("leg_answered", sdp)

    def _end_late_answer(self, branch: Any, sdp: bytes | None) -> None:
        """Answered too late (crossed our CANCEL or another branch won): end it."""
        if branch is not self.winner:
            self._live.discard(self._index(branch))
            branch.hangup(COMPLETED_ELSEWHERE)

    def _branch_failed(self, branch: Any, status: int, reason: str) -> None:
        index = self._index(branch)
        if index not in self._live:
            return  # a branch we cancelled, or one that already ended
        self._live.discard(index)
        self.failures.append((status, reason))
        self.outcomes[index] = (status, reason)
        if self._live:
            return
        self.state = S.TERMINATED
        final_status, final_reason = best_failure(self.failures)
        self._tell("leg_failed", final_status, final_reason)

    def _loser_failed(self, branch: Any, status: int, reason: str) -> None:
        self._live.discard(self._index(branch))

    def _branch_ended(self, branch: Any, cause: Cause) -> None:
        if branch is self.winner:
            self.state = S.TERMINATED
            self._tell("leg_ended", cause)
        else:
            self._loser_ended(branch, cause)

    def _loser_ended(self, branch: Any, cause: Cause) -> None:
        """A losing branch that ended (e.g. its late 2xx was BYEd): nothing to say."""
        self._live.discard(self._index(branch))

    def _tell(self, event: str, *args: Any) -> None:
        listener = self.listener
        if listener is not None:
            getattr(listener, event)(self, *args)
