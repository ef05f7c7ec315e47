"""Call events: every attempt, refused ones included, from CallAttempted to CallEnded."""

from __future__ import annotations

import pytest
from twisted.internet import defer
from twisted.logger import LogLevel, globalLogPublisher
from zope.interface import implementer
from zope.interface.verify import verifyObject

from phpvoip.callrecord import CallRecord, disposition_for, q850_for
from phpvoip.events import (
    CallEnded,
    RecentCalls,
)
from phpvoip.interfaces import ICallObserver, NotMine
from phpvoip.sip.message import Request, parse
from tests.unit.test_engine import (
    BACKEND,
    PHONE,
    Challenges,
    answer,
    deliver,
    invite,
    make_engine,
    requests,
    responses,
    settle,
    trunk,
)


@implementer(ICallObserver)
class Recorder:
    """Writes down every event it hears."""

    def __init__(self) -> None:
        self.events: list = []

    def call_event(self, event):
        self.events.append(event)

    def kinds(self):
        return [type(e).__name__ for e in self.events]

    @property
    def ended(self) -> CallEnded:
        [ended] = [e for e in self.events if isinstance(e, CallEnded)]
        return ended


def observed(*modules, **settings):
    engine, transport, clock = make_engine(*modules, **settings)
    recorder = Recorder()
    engine.add_observer(recorder)
    return engine, transport, clock, recorder


def caller_request(method: str, ok, cseq: int, branch: str) -> bytes:
    """A request from the caller in the dialog our 200 `ok` set up."""
    request = Request(method, ok.contact[0].uri)
    for name in ("Via", "From", "To", "Call-ID"):
        request.add(name, ok.get(name))
    request.add("CSeq", f"{cseq} {method}")
    request.top_via.params["branch"] = branch
    return bytes(request)


def cancel_of(data: bytes) -> bytes:
    original = parse(data)
    cancel = Request("CANCEL", original.uri)
    for name in ("Via", "From", "To", "Call-ID", "Max-Forwards"):
        cancel.add(name, original.get(name))
    cancel.add("CSeq", "1 CANCEL")
    return bytes(cancel)


def test_observers_provide_the_interface():
    """The recent-calls list and test observers provide ICallObserver."""
    assert verifyObject(ICallObserver, RecentCalls())
    assert verifyObject(ICallObserver, Recorder())


def test_answered_call():
    """Attempted, routed, ringing, answered, ended (ANSWERED, normal clearing, durations)."""
    engine, transport, clock, seen = observed(trunk())
    deliver(engine, invite(from_user="1001", to_user="2005"))
    [out] = requests(transport.take(), BACKEND)
    clock.advance(1)
    deliver(engine, answer(out, 180), BACKEND)
    clock.advance(2)
    deliver(engine, answer(out, 200, body=b"v=0\r\n"), BACKEND)
    [ok] = [r for r in responses(transport.take(), PHONE) if r.status == 200]
    deliver(engine, caller_request("ACK", ok, 1, "z9hG4bKack"))
    clock.advance(30)
    deliver(engine, caller_request("BYE", ok, 2, "z9hG4bKbye"))
    assert seen.kinds() == ["CallAttempted", "CallRouted", "CallRinging", "CallAnswered", "CallEnded"]
    attempted, routed, ringing, answered, ended = seen.events
    call = attempted.call
    assert all(e.call is call for e in seen.events)
    assert (call.caller, call.callee, attempted.source) == ("1001", "2005", PHONE)
    assert (routed.inbound, routed.outbound, routed.route) == ("backend", "backend", None)
    assert ringing.status == 180 and ringing.time == 1
    assert answered.setup_s == 3
    assert (ended.disposition, ended.status, ended.cause) == ("ANSWERED", 200, "Q.850;cause=16")
    assert ended.q850 == 16
    assert (ended.hung_up_by, ended.setup_s, ended.talk_s, ended.duration_s) == ("caller", 3, 30, 33)
    assert engine.records[-1] is call


@pytest.mark.parametrize(
    "modules, data, status, q850",
    [
        ((), invite(), 403, 21),  # nobody takes the caller
        ((trunk(numbers="9*"),), invite(to_user="2005"), 404, 1),  # nobody takes the callee
        ((trunk(),), invite(from_user="2005", to_user="2005"), 400, 41),  # From == To
        ((Challenges(),), invite(), 407, 21),  # a challenge nobody else overrides
    ],
)
def test_refused_attempts_end_at_once(modules, data, status, q850):
    """A refused attempt goes from attempted straight to ended, with its status."""
    engine, transport, clock, seen = observed(*modules)
    deliver(engine, data)
    assert [r.status for r in responses(transport.take(), PHONE)] == [100, status]
    assert seen.kinds() == ["CallAttempted", "CallEnded"]
    ended = seen.ended
    assert (ended.disposition, ended.status, ended.cause) == ("FAILED", status, f"SIP;cause={status}")
    assert (ended.q850, ended.hung_up_by, ended.talk_s) == (q850, "switch", 0)
    assert engine.records[-1].status == status


@pytest.mark.parametrize(
    "callee_status, caller_status, disposition",
    [
        (486, 486, "BUSY"), (488, 488, "FAILED"), (503, 500, "FAILED"),
        (603, 603, "FAILED"), (404, 404, "FAILED"),
    ],
)
def test_callee_failures(callee_status, caller_status, disposition):
    """The callee's final error ends the call with what the caller saw."""
    engine, transport, clock, seen = observed(trunk())
    deliver(engine, invite())
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, callee_status), BACKEND)
    assert seen.kinds() == ["CallAttempted", "CallRouted", "CallEnded"]
    ended = seen.ended
    assert (ended.status, ended.disposition, ended.hung_up_by) == (caller_status, disposition, "callee")
    assert ended.cause == f"SIP;cause={caller_status}" and ended.q850 == q850_for(caller_status)


def test_caller_cancels_while_ringing():
    """A CANCEL while the callee rings ends the call CANCELLED, 487, by the caller."""
    engine, transport, clock, seen = observed(trunk())
    data = invite()
    deliver(engine, data)
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 180), BACKEND)
    clock.advance(4)
    deliver(engine, cancel_of(data))
    assert seen.kinds() == ["CallAttempted", "CallRouted", "CallRinging", "CallEnded"]
    ended = seen.ended
    assert (ended.disposition, ended.status, ended.hung_up_by) == ("CANCELLED", 487, "caller")
    assert ended.setup_s == 4 and ended.talk_s == 0


def test_ring_timeout_is_no_answer():
    """No answer within ring_timeout: NO ANSWER, 480, ended by the switch."""
    engine, transport, clock, seen = observed(trunk(), ring_timeout=10)
    deliver(engine, invite())
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 180), BACKEND)
    clock.advance(10)
    ended = seen.ended
    assert (ended.disposition, ended.status, ended.q850, ended.hung_up_by) == ("NO ANSWER", 480, 18, "switch")


class Slow:
    """A module that takes its time deciding on a caller (a Deferred)."""

    name, weight = "slow", 100

    def __init__(self) -> None:
        self.pending: defer.Deferred = defer.Deferred()
        self.call = None

    def start(self, engine):
        self.engine = engine

    def stop(self):
        pass

    def callin(self, call):
        self.call = call
        return self.pending

    def callout(self, invite, call):
        raise NotMine()

    def request(self, *args):
        raise NotMine()


def test_cancel_while_modules_decide():
    """A CANCEL before any module answered ends the attempt CANCELLED, once."""
    slow = Slow()
    engine, transport, clock, seen = observed(slow, trunk())
    data = invite()
    deliver(engine, data)
    deliver(engine, cancel_of(data))
    slow.pending.callback(engine.inbound_leg(slow.call))
    assert not requests(transport.take(), BACKEND)
    assert seen.kinds() == ["CallAttempted", "CallEnded"]
    assert (seen.ended.disposition, seen.ended.status, seen.ended.hung_up_by) == ("CANCELLED", 487, "caller")
    settle(clock)
    assert not any(engine.counts().values()), engine.counts()


def test_failing_observer_is_logged_and_the_call_goes_on():
    """An observer that raises is logged; the call and the other observers go on."""

    @implementer(ICallObserver)
    class Broken:
        def call_event(self, event):
            raise RuntimeError("observer bug")

    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:
        engine, transport, clock = make_engine(trunk())
        engine.add_observer(Broken())
        recorder = Recorder()
        engine.add_observer(recorder)
        deliver(engine, invite())
        [out] = requests(transport.take(), BACKEND)
        deliver(engine, answer(out, 200, body=b"v=0\r\n"), BACKEND)
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert [r.status for r in responses(transport.take(), PHONE)] == [200]
    assert recorder.kinds() == ["CallAttempted", "CallRouted", "CallAnswered"]
    failures = [e for e in logged
                if e.get("log_level") == LogLevel.critical and "observer" in e["log_format"]]
    assert len(failures) == 3  # one per event, each logged with the failure
    engine.remove_observer(recorder)
    engine.hangup_all()
    assert recorder.kinds()[-1] == "CallAnswered"
    settle(clock)


def test_application_call_is_an_attempt_too():
    """A call an application places has no source and the same events."""
    from phpvoip.apps.robot import Robot, RobotSettings

    robot = Robot("robot", RobotSettings("9000", hangup_after=3))
    engine, transport, clock, seen = observed(robot, trunk())
    robot.dial("2005")
    [out] = requests(transport.take(), BACKEND)
    deliver(engine, answer(out, 200, body=b"v=0\r\n"), BACKEND)
    clock.advance(3)
    assert seen.kinds() == ["CallAttempted", "CallRouted", "CallAnswered", "CallEnded"]
    assert seen.events[0].source is None and seen.ended.hung_up_by == "caller"


def test_disposition_and_q850_tables():
    """Dispositions follow Asterisk's CDR names; Q.850 causes follow RFC 3398."""
    assert disposition_for(200, True, False) == "ANSWERED"
    assert disposition_for(487, False, True) == "CANCELLED"
    assert disposition_for(486, False, False) == disposition_for(600, False, False) == "BUSY"
    assert disposition_for(480, False, False) == disposition_for(408, False, False) == "NO ANSWER"
    assert disposition_for(403, False, False) == "FAILED"
    assert [q850_for(s) for s in (None, 404, 486, 480, 408, 503, 603)] == [16, 1, 17, 18, 102, 41, 21]


def test_record_times():
    """Setup time runs to the answer (or the end); billable time from answer to end."""
    record = CallRecord("call-1", "cid", "a", "b", 100.0)
    assert record.setup_time is None and record.duration == 0
    record.answer = 104.0
    record.finish(130.0, None, "bye", "callee")
    assert (record.setup_time, record.duration, record.total_time, record.status) == (4, 26, 30, 200)
    assert (record.cause, record.disposition) == ("Q.850;cause=16", "ANSWERED")
