"""The transaction layer's TimerQueue, and what lingering transactions let go of."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from phpvoip.sip.transaction_base import TimerQueue
from tests.unit.transaction_fakes import UDP_PEER, Responses, advance, answer, make_layer, request


class Timed:
    """Stands in for a transaction: writes down which timer fired, and when."""

    def __init__(self, clock: Clock, fired: list, name: str = "tx") -> None:
        self.clock = clock
        self.fired = fired
        self.name = name
        self.fail_on: str | None = None

    def _timer_fired(self, timer: str) -> None:
        self.fired.append((self.clock.seconds(), self.name, timer))
        if timer == self.fail_on:
            raise RuntimeError(timer)


def test_timers_fire_at_their_deadline_in_order_on_one_reactor_call():
    """Several timers share one delayed call and fire earliest first, each at its time."""
    clock, fired = Clock(), []
    queue = TimerQueue(clock)
    tx = Timed(clock, fired)
    queue.arm(32.0, tx, "B")
    queue.arm(0.5, tx, "A")
    queue.arm(5.0, tx, "K")
    assert len(clock.getDelayedCalls()) == 1
    for _ in range(3):
        clock.advance(clock.getDelayedCalls()[0].getTime() - clock.seconds())
    assert fired == [(0.5, "tx", "A"), (5.0, "tx", "K"), (32.0, "tx", "B")]
    assert len(queue) == 0
    assert clock.getDelayedCalls() == []


def test_a_timer_armed_while_firing_is_placed_correctly():
    """A handler that arms a later timer does not hide an earlier one already queued;
    at equal deadlines the timer armed first fires first."""
    clock, fired = Clock(), []
    queue = TimerQueue(clock)

    class Rearms(Timed):
        def _timer_fired(self, timer: str) -> None:
            super()._timer_fired(timer)
            if timer == "A":
                queue.arm(31.5, self, "A2")

    tx = Rearms(clock, fired)
    queue.arm(0.5, tx, "A")
    queue.arm(32.0, tx, "B")
    clock.advance(0.5)
    clock.advance(31.5)
    assert fired == [(0.5, "tx", "A"), (32.0, "tx", "B"), (32.0, "tx", "A2")]


def test_cancelling_every_timer_leaves_no_delayed_call():
    """An idle queue holds no reactor call (tests and shutdown see nothing pending)."""
    clock, fired = Clock(), []
    queue = TimerQueue(clock)
    tx = Timed(clock, fired)
    entries = [queue.arm(t, tx, str(t)) for t in (1.0, 2.0, 3.0)]
    for entry in entries:
        queue.cancel(entry)
    queue.cancel(entries[0])  # twice is harmless
    assert clock.getDelayedCalls() == []
    clock.advance(10)
    assert fired == []


def test_cancelled_timers_do_not_fire_and_dead_entries_are_compacted():
    """Cancelled timers never fire; once they outnumber the live ones they leave the heap."""
    clock, fired = Clock(), []
    queue = TimerQueue(clock)
    keep = Timed(clock, fired, "keep")
    queue.arm(100.0, keep, "L")
    doomed = [queue.arm(50.0 + i, Timed(clock, fired, f"d{i}"), "X") for i in range(200)]
    for entry in doomed:
        queue.cancel(entry)
    assert len(queue) == 1
    assert len(queue._heap) < 100
    clock.advance(100)
    assert fired == [(100.0, "keep", "L")]


def test_a_failing_handler_does_not_stop_the_other_timers():
    """An exception goes to the reactor (here: out of advance) and the queue still runs the rest."""
    clock, fired = Clock(), []
    queue = TimerQueue(clock)
    bad, good = Timed(clock, fired, "bad"), Timed(clock, fired, "good")
    bad.fail_on = "A"
    queue.arm(1.0, bad, "A")
    queue.arm(2.0, good, "B")
    with pytest.raises(RuntimeError):
        clock.advance(1.0)
    clock.advance(1.0)
    assert fired == [(1.0, "bad", "A"), (2.0, "good", "B")]


def test_deadline_reached_exactly_after_float_rounding():
    """A clock stopped exactly at a deadline fires it, even when now + (deadline - now) rounds past it."""
    clock, fired = Clock(), []
    queue = TimerQueue(clock)
    tx = Timed(clock, fired)
    queue.arm(0.1, tx, "E1")
    queue.arm(6.4, tx, "F")
    clock.advance(0.1)
    clock.advance(6.3)
    clock.advance(6.4 - clock.seconds())
    assert [timer for _, _, timer in fired] == ["E1", "F"]


# -- what a transaction keeps while it lingers for its last timer ------------------------

def test_accepted_server_invite_keeps_no_message_yet_still_resends_a_2xx_it_is_given():
    """RFC 6026 Accepted: the request and the 2xx are dropped (the user retransmits the
    2xx), the To tag stays, ACKs still go up and a 2xx passed in still goes out."""
    clock, wire, user, layer = make_layer()
    invite = request("INVITE")
    layer.message_received(invite, UDP_PEER)
    [(_, tx)] = user.requests
    ok = invite.response(200, to_tag="t9")
    tx.respond(ok)
    assert tx.request is None and tx.last_response is None
    assert tx.to_tag == "t9" and tx.method == "INVITE" and tx.call_id == invite.call_id
    tx.respond(ok)
    assert len(wire.messages(200)) == 2
    advance(clock, 64 * 0.5)
    assert tx.terminated and layer.counts() == {"client": 0, "server": 0}


def test_completed_server_non_invite_keeps_only_its_response_for_retransmissions():
    """A completed non-INVITE drops its request but answers a retransmission again."""
    clock, wire, user, layer = make_layer()
    bye = request("BYE", to_tag="t1")
    layer.message_received(bye, UDP_PEER)
    [(_, tx)] = user.requests
    tx.respond(bye.response(200))
    assert tx.request is None and tx.last_response is not None
    layer.message_received(request("BYE", to_tag="t1"), UDP_PEER)
    assert len(wire.messages(200)) == 2


def test_completed_client_non_invite_lets_go_of_its_user():
    """Timer K only absorbs duplicates: the request and the callback are dropped, and a
    duplicate final response reaches nobody."""
    clock, wire, user, layer = make_layer()
    got = Responses()
    options = request("OPTIONS", branch="z9hG4bK-c1")
    tx = layer.send_request(options, UDP_PEER, got)
    layer.message_received(answer(options, 200), UDP_PEER)
    assert got.statuses == [200]
    assert tx.request is None and tx.on_response is not got
    layer.message_received(answer(options, 200), UDP_PEER)
    assert got.statuses == [200]
    advance(clock, 5.0)
    assert tx.terminated
