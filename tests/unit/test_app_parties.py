"""The switch's legs to built-in applications face the way SIP legs do: a leg the
switch dials presents the caller and has the callee as its far end; a caller's leg
presents the callee and has the caller as its far end. What reads them (a
transfer's record, a REFER's new INVITE, the manhole's tables) then names the
right party."""

from __future__ import annotations

from phpvoip.apps.robot import Robot, RobotSettings
from phpvoip.sip.message import parse
from tests.unit.test_engine import invite, make_engine, trunk


def test_the_leg_to_the_robot_has_the_robot_as_its_far_end():
    robot = Robot("robot", RobotSettings("9000"))
    make_engine(robot, trunk())
    request = parse(invite(to_user="9000"))
    engine_side = robot.callout(request, None)
    assert engine_side.remote_party.uri.user == "9000"
    assert engine_side.local_party.uri.user == request.from_.uri.user != "9000"


def test_the_robots_own_call_comes_from_the_robot():
    robot = Robot("robot", RobotSettings("9000", hangup_after=3))
    engine, _transport, _clock = make_engine(robot, trunk())
    robot.dial("2005")
    [bridge] = engine.calls.values()
    engine_side = bridge.parties[0]
    assert engine_side.remote_party.uri.user == "9000"
    assert engine_side.local_party.uri.user == "2005"
