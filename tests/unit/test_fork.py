"""The parallel forking leg: first 2xx wins, losers cancelled, best failure relayed."""

from __future__ import annotations

import pytest
from zope.interface.verify import verifyObject

from phpvoip.interfaces import NORMAL_CLEARING, Cause, ICallLeg, ICallLegListener, LegState
from phpvoip.legs.fork import COMPLETED_ELSEWHERE, ForkLeg, best_failure
from tests.unit.registrar_fakes import FakeLeg


class Listener:
    """Records what the fork reports, as (event, args) pairs."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def leg_progress(self, leg, status, reason, sdp):
        self.events.append(("progress", status, sdp))

    def leg_answered(self, leg, sdp):
        self.events.append(("answered", sdp))

    def leg_failed(self, leg, status, reason):
        self.events.append(("failed", status, reason))

    def leg_ended(self, leg, cause):
        self.events.append(("ended", cause))

    def leg_acked(self, leg, sdp):
        self.events.append(("acked", sdp))

    def leg_request(self, leg, method, body, content_type, headers):
        self.events.append(("request", method))
        from twisted.internet import defer

        from phpvoip.interfaces import LegReply

        return defer.succeed(LegReply(200, "OK"))


def fork(n: int = 3) -> tuple[ForkLeg, list[FakeLeg], Listener]:
    branches = [FakeLeg(f"b{i}") for i in range(n)]
    leg = ForkLeg(branches)
    listener = Listener()
    leg.listener = listener
    leg.offer = b"v=0 offer"
    leg.dial()
    return leg, branches, listener


def test_fork_provides_the_leg_contracts():
    """A fork is an ICallLeg to its owner and an ICallLegListener to its branches."""
    leg, _, _ = fork()
    assert verifyObject(ICallLeg, leg) and verifyObject(ICallLegListener, leg)


def test_a_fork_needs_branches():
    """An empty fork is a programming error."""
    with pytest.raises(ValueError):
        ForkLeg([])


def test_dial_rings_every_branch_with_the_offer():
    """dial() dials each branch once, all with the fork's offer."""
    leg, branches, _ = fork()
    assert [b.dialled for b in branches] == [1, 1, 1]
    assert {b.offer for b in branches} == {b"v=0 offer"}
    assert leg.state == LegState.CALLING
    leg.dial()
    assert [b.dialled for b in branches] == [1, 1, 1]


def test_first_answer_wins_and_the_others_are_cancelled():
    """The first 2xx is relayed; every other branch is hung up with 'Call
    completed elsewhere'."""
    leg, branches, listener = fork()
    branches[1].answered(b"v=0 b1")
    assert listener.events == [("answered", b"v=0 b1")]
    assert leg.winner is branches[1] and leg.state == LegState.ESTABLISHED
    assert branches[0].hangups == [COMPLETED_ELSEWHERE] and branches[2].hangups == [COMPLETED_ELSEWHERE]
    assert branches[1].hangups == []
    assert COMPLETED_ELSEWHERE.reason_header == 'SIP;cause=200;text="Call completed elsewhere"'


def test_a_late_second_answer_is_hung_up():
    """A 2xx from a losing branch that crossed its CANCEL is ended, not relayed."""
    leg, branches, listener = fork(2)
    branches[0].answered()
    branches[1].answered()
    assert [e[0] for e in listener.events] == ["answered"]
    assert branches[1].hangups == [COMPLETED_ELSEWHERE, COMPLETED_ELSEWHERE]


def test_cancelled_losers_do_not_report():
    """The 487s of cancelled branches are not relayed after the answer."""
    leg, branches, listener = fork()
    branches[0].answered()
    branches[1].failed(487)
    branches[2].failed(487)
    assert [e[0] for e in listener.events] == ["answered"]


def test_provisionals_are_relayed_once_and_early_media_from_one_branch():
    """A repeated 180 from another branch is dropped; only the first branch with
    early media has its SDP relayed."""
    leg, branches, listener = fork()
    branches[0].ring(180)
    branches[1].ring(180)
    branches[1].ring(183, b"v=0 early b1")
    branches[2].ring(183, b"v=0 early b2")
    branches[2].ring(180)
    assert listener.events == [
        ("progress", 180, None),
        ("progress", 183, b"v=0 early b1"),
        ("progress", 180, None),
    ]
    assert leg.state == LegState.EARLY and leg.remote_sdp == b"v=0 early b1"


def test_all_failed_gives_the_best_failure():
    """When every branch fails, the caller hears the §16.7 choice."""
    leg, branches, listener = fork()
    branches[0].failed(486, "Busy Here")
    branches[1].failed(404, "Not Found")
    assert listener.events == []
    branches[2].failed(603, "Decline")
    assert listener.events == [("failed", 603, "Decline")]
    assert leg.state == LegState.TERMINATED


def test_no_branch_answered_at_all_is_480():
    """Branches that all timed out or were unreachable give 480."""
    leg, branches, listener = fork(2)
    branches[0].failed(408, "Request Timeout")
    branches[1].failed(503, "Service Unavailable")
    assert listener.events == [("failed", 480, "Temporarily Unavailable")]


def test_a_failed_branch_does_not_end_the_others():
    """One branch failing leaves the others ringing; a later answer wins."""
    leg, branches, listener = fork(2)
    branches[0].failed(486, "Busy Here")
    branches[1].answered()
    assert [e[0] for e in listener.events] == ["answered"]


def test_hangup_before_answer_cancels_every_branch_quietly():
    """The caller giving up hangs up all branches; their 487s are not relayed."""
    leg, branches, listener = fork()
    cause = Cause(487, "Caller cancelled", "remote")
    leg.hangup(cause)
    assert all(b.hangups == [cause] for b in branches)
    for b in branches:
        b.failed(487)
    assert listener.events == [] and leg.state == LegState.TERMINATED
    leg.hangup(cause)
    assert all(len(b.hangups) == 1 for b in branches)


def test_after_answer_the_fork_relays_to_and_from_the_winner():
    """In-dialog requests go to the winner; the winner's BYE and requests come
    back up; hangup reaches the winner only."""
    leg, branches, listener = fork(2)
    branches[0].answered()
    reply = leg.request("INFO", b"x", "text/plain").result
    assert reply.status == 200 and branches[0].requests == [("INFO", b"x", "text/plain")]
    branches[0].listener.leg_request(branches[0], "UPDATE", b"", None, ())
    loser = branches[1].listener.leg_request(branches[1], "UPDATE", b"", None, ()).result
    assert loser.status == 481
    branches[0].listener.leg_ended(branches[0], NORMAL_CLEARING)
    assert listener.events[1:] == [("request", "UPDATE"), ("ended", NORMAL_CLEARING)]
    assert leg.state == LegState.TERMINATED


def test_hangup_after_answer_reaches_the_winner():
    """hangup() after answer is the winner's BYE."""
    leg, branches, _ = fork(2)
    branches[1].answered()
    leg.hangup(NORMAL_CLEARING)
    assert branches[1].hangups == [NORMAL_CLEARING]
    assert branches[0].hangups == [COMPLETED_ELSEWHERE]


def test_requests_before_answer_are_refused():
    """An in-dialog request before anyone answered gets 481."""
    leg, _, _ = fork()
    assert leg.request("INFO", b"", None).result.status == 481


def test_max_forwards_reaches_every_branch():
    """The engine lowering Max-Forwards on the fork lowers it on each branch."""
    leg, branches, _ = fork()
    leg.max_forwards = 12
    assert [b.max_forwards for b in branches] == [12, 12, 12] and leg.max_forwards == 12


def test_parties_come_from_the_winner():
    """Before answer the parties are the first branch's; after, the winner's."""
    leg, branches, _ = fork(2)
    for i, b in enumerate(branches):
        b.remote_party = f"party{i}"
    assert leg.remote_party == "party0"
    branches[1].answered()
    assert leg.remote_party == "party1"


def test_inbound_actions_are_refused():
    """A fork is outbound: progress/answer/reject are programming errors."""
    leg, _, _ = fork()
    with pytest.raises(TypeError):
        leg.progress(180, "Ringing")
    with pytest.raises(TypeError):
        leg.answer(None)
    with pytest.raises(TypeError):
        leg.reject(486, "x")


@pytest.mark.parametrize(
    "failures, expected",
    [
        ([(486, "Busy"), (603, "Decline"), (404, "NF")], (603, "Decline")),
        ([(500, "Err"), (486, "Busy"), (404, "NF")], (486, "Busy")),
        ([(486, "Busy"), (484, "Incomplete")], (484, "Incomplete")),
        ([(500, "Err"), (502, "Bad GW")], (500, "Err")),
        ([(408, "Timeout"), (486, "Busy")], (486, "Busy")),
        ([(408, "Timeout"), (503, "Unavailable")], (480, "Temporarily Unavailable")),
        ([], (480, "Temporarily Unavailable")),
    ],
)
def test_best_failure_rules(failures, expected):
    """§16.7 step 6: 6xx first, else the lowest class, helpful 4xx preferred;
    no real answer at all is 480."""
    assert best_failure(failures) == expected


def test_a_branch_failing_while_dialling_does_not_stop_the_others():
    """A branch that fails at once (synchronously) leaves the rest to be dialled."""

    class FailsAtOnce(FakeLeg):
        def dial(self):
            super().dial()
            self.failed(503, "Unreachable")

    branches = [FailsAtOnce("x"), FakeLeg("y")]
    leg = ForkLeg(branches)
    listener = Listener()
    leg.listener = listener
    leg.dial()
    assert branches[1].dialled == 1 and listener.events == []
    branches[1].failed(486, "Busy Here")
    assert listener.events == [("failed", 486, "Busy Here")]
