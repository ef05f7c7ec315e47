"""Legs, forks and bridges are state machines: one table each, impossible events refused."""

from __future__ import annotations

import enum

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from phpvoip.bridge import Bridge, BridgeState
from phpvoip.callrecord import CallRecord
from phpvoip.interfaces import Cause, ILegHost, LegState
from phpvoip.legs.fork import ForkLeg
from phpvoip.legs.local import LocalLeg, local_pair
from phpvoip.legs.sip import InboundLeg, OutboundLeg
from phpvoip.statemachine import StateMachine, StateMachineError
from tests.unit.test_engine import BACKEND, deliver, invite, make_engine, trunk

MACHINES = [InboundLeg, OutboundLeg, LocalLeg, ForkLeg, Bridge]


@pytest.mark.parametrize("machine", MACHINES, ids=lambda m: m.__name__)
def test_tables_are_keyed_by_one_enum(machine):
    """Every state a table lists is a member of one enum and takes some event
    (handler names are checked when the class is made, see below)."""
    states = {type(state) for state in machine.TABLE}
    assert len(states) == 1 and issubclass(states.pop(), enum.Enum)
    assert all(events for events in machine.TABLE.values())


def test_leg_tables_cover_every_state_a_leg_can_be_in():
    """Inbound legs start calling; the others start idle; all can end."""
    assert set(InboundLeg.TABLE) == set(LegState) - {LegState.IDLE}
    for machine in (OutboundLeg, LocalLeg, ForkLeg):
        assert set(machine.TABLE) == set(LegState), machine.__name__
    assert set(Bridge.TABLE) == set(BridgeState)


def test_a_misspelt_handler_fails_at_class_creation():
    """A table naming no method is refused when the class is made, not at run time."""

    class Colour(enum.Enum):
        RED = 1

    with pytest.raises(TypeError, match="names no method '_nope'"):
        type("Broken", (StateMachine,), {"TABLE": {Colour.RED: {"go": "_nope"}}})


def test_impossible_event_names_machine_state_and_event():
    """Answering a local leg nobody dialled is a bug, reported as such."""
    leg, _ = local_pair()
    with pytest.raises(StateMachineError) as info:
        leg.answer(b"sdp")
    error = info.value
    assert (error.machine, error.state, error.event) == ("LocalLeg", LegState.IDLE, "answer")
    assert str(error) == "LocalLeg in state IDLE cannot take event 'answer'"


def test_expected_races_are_ignored():
    """A second hang-up, or one after the other side ended, changes nothing."""
    engine_side, app_side = local_pair()
    engine_side.dial()
    app_side.answer(None)
    app_side.hangup(Cause(None, "bye"))
    engine_side.hangup(Cause(None, "bye too"))
    app_side.hangup(Cause(None, "again"))
    assert engine_side.state is app_side.state is LegState.TERMINATED


def test_inbound_leg_refuses_progress_after_answer():
    """An answered inbound leg cannot send a provisional response."""
    engine, transport, clock = make_engine(trunk())
    deliver(engine, invite())
    [bridge] = engine.calls.values()
    leg = bridge.inbound
    leg.answer(b"v=0\r\n")
    expected = "InboundLeg in state ESTABLISHED cannot take event 'progress'"
    with pytest.raises(StateMachineError, match=expected):
        leg.progress(180, "Ringing", None)


def test_outbound_leg_orders_that_are_not_its_own():
    """An outbound leg does not answer or send provisional responses."""
    engine, transport, clock = make_engine(trunk())
    deliver(engine, invite())
    [bridge] = engine.calls.values()
    with pytest.raises(TypeError):
        bridge.outbound.answer(None)


def test_bridge_refuses_an_answer_from_the_caller():
    """In setup only the callee answers; a caller's answer is an impossible event."""
    clock = Clock()
    inbound, caller = local_pair()
    outbound, callee = local_pair()
    record = CallRecord("call-1", "cid", "a", "b", 0.0)
    bridge = Bridge(record, inbound, outbound, clock, 30, 3600, lambda b: None)
    caller.dial()
    bridge.start()
    with pytest.raises(StateMachineError, match="Bridge in state SETUP cannot take event 'caller_answered'"):
        bridge.leg_answered(inbound, None)


def test_fork_state_follows_its_branches():
    """A fork is calling, then early on 18x, established on the first answer."""
    branches = [local_pair() for _ in range(2)]
    fork = ForkLeg([engine_side for engine_side, _ in branches])
    fork.dial()
    assert fork.state is LegState.CALLING
    branches[1][1].progress(180, "Ringing", None)
    assert fork.state is LegState.EARLY
    branches[0][1].answer(None)
    assert fork.state is LegState.ESTABLISHED and fork.winner is branches[0][0]
    assert branches[1][0].state is LegState.TERMINATED
    fork.hangup(Cause(None, "bye"))
    assert fork.state is LegState.TERMINATED


def test_sip_legs_speak_to_their_host_only():
    """SIP legs are given the leg host, not the engine."""
    engine, transport, clock = make_engine(trunk())
    deliver(engine, invite())
    [bridge] = engine.calls.values()
    assert isinstance(bridge.inbound, InboundLeg) and isinstance(bridge.outbound, OutboundLeg)
    assert bridge.inbound.host is engine.host and bridge.outbound.host is engine.host
    assert verifyObject(ILegHost, engine.host)
    assert not hasattr(bridge.inbound, "engine")
    assert bridge.outbound.destination == BACKEND
