"""The manhole's tables (phpvoip.inspect) over a real engine under a test clock."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from phpvoip.apps.robot import Robot, RobotSettings
from phpvoip.inspect import (
    Table,
    agents,
    calls,
    explain_route,
    find_call,
    lines,
    queues,
    registrations,
    routing_request,
)
from phpvoip.modules.registrar import Registrar, RegistrarSettings
from phpvoip.modules.users import UserSpec
from phpvoip.originate import OriginateFailed
from phpvoip.router import Route
from phpvoip.sip.address import Address
from phpvoip.store import Binding
from tests.unit.channel_fakes import Upstream
from tests.unit.test_call_events import caller_request
from tests.unit.test_channel import make_channel
from tests.unit.test_engine import (
    BACKEND,
    PHONE,
    Declines,
    answer,
    deliver,
    invite,
    make_engine,
    requests,
    responses,
    trunk,
)


def rows(table: Table) -> list[list[str]]:
    """The table's text split back into cells (columns are two spaces apart)."""
    return [re.split(r" {2,}", line.strip()) for line in table.text().splitlines()[2:]]


def test_table_aligns_columns_and_says_when_empty():
    """Cells line up under their headers; an empty table is one sentence."""
    table = Table(("A", "LONGER"), empty="nothing here")
    assert table.text() == "nothing here"
    table.add("xyz", 1)
    table.add("q", None)
    assert table.text().splitlines() == ["A    LONGER", "---  ------", "xyz  1", "q"]
    assert repr(table) == str(table) == table.text()


def registrar_with_bindings(clock):
    registrar = Registrar("phones", RegistrarSettings(users={"1001": UserSpec(password="pw")}))
    engine, _, clock = make_engine(registrar)
    for aor, contact, left, agent in (("1001", "sip:1001@10.0.0.5:5062", 300, "Yealink T46"),
                                      ("1000", "sip:1000@10.0.0.4", 3600, None)):
        registrar.bindings.put(Binding(aor, contact, contact, clock.seconds() + left, "cid", 1,
                                       source=Address("udp", "10.0.0.9", 40000), user_agent=agent))
    return engine, clock


def test_registrations_show_expiry_left_source_and_agent():
    """regs(): one row per live binding, sorted by AOR, with the seconds left."""
    engine, clock = registrar_with_bindings(None)
    clock.advance(60)
    assert rows(registrations(engine)) == [
        ["phones", "1000", "sip:1000@10.0.0.4", "59m00s", "udp:10.0.0.9:40000"],
        ["phones", "1001", "sip:1001@10.0.0.5:5062", "4m00s", "udp:10.0.0.9:40000", "Yealink T46"],
    ]
    clock.advance(300)  # 1001 has lapsed
    assert [r[1] for r in rows(registrations(engine))] == ["1000"]


def test_no_registrar_no_registrations():
    """Without a registrar the table says so."""
    engine, _, _ = make_engine(trunk())
    assert registrations(engine).text() == "no registrations"


def test_calls_show_legs_states_and_durations():
    """calls(): while ringing, both legs with module, far end and state; once
    answered the talk time runs; media shows "-"; gone once hung up."""
    engine, transport, clock = make_engine(trunk())
    assert calls(engine).text() == "no active calls"
    deliver(engine, invite(from_user="1001", to_user="2005"))
    [out] = requests(transport.take(), BACKEND)
    clock.advance(2)
    [call_id] = engine.calls
    assert rows(calls(engine)) == [
        [call_id, "1001", "2005", "setup", "2s", "caller 1001", "backend", str(PHONE), "calling", "-"],
        ["callee 2005", "backend", str(BACKEND), "calling", "-"],
    ]
    deliver(engine, answer(out, 200, body=b"v=0\r\n"), BACKEND)
    [ok] = [r for r in responses(transport.take(), PHONE) if r.status == 200]
    deliver(engine, caller_request("ACK", ok, 1, "z9hG4bKack"))
    clock.advance(75)
    first, second = rows(calls(engine))
    assert first[:6] == [call_id, "1001", "2005", "answered", "1m17s", "1m15s"]
    assert first[-2:] == ["established", "-"] and second[-2:] == ["established", "-"]
    assert find_call(engine, call_id) is find_call(engine, int(call_id.split("-")[1])) is not None
    assert find_call(engine, engine.calls[call_id].record) is engine.calls[call_id]
    assert find_call(engine, engine.calls[call_id].record.call_id) is engine.calls[call_id]
    assert engine.hangup(call_id)
    assert calls(engine).text() == "no active calls" and find_call(engine, call_id) is None


def test_lines_show_registration_state():
    """lines(): a registered line with its number, server, renewal and counters."""
    channel, fake = make_channel()
    channel.start(fake)
    Upstream(fake.clock).serve(fake)
    [row] = rows(lines(SimpleNamespace(modules=[channel, trunk()])))
    assert row[:4] == ["carrier", "2005", "registered", str(channel.settings.server)]
    assert row[5] == "200 OK" and row[-2:] == ["0", "0"]
    assert lines(SimpleNamespace(modules=[trunk()])).text() == "no outside lines"


class Queue:
    """A module offering queue and agent statistics (the queue module of issue 11)."""

    name = "sales"

    def queue_stats(self):
        return [{"queue": "sales", "waiting": 2, "longest_wait": 31.5}]

    def agent_stats(self):
        return [{"agent": "1001", "state": "talking"}, {"agent": "1002", "state": "idle"}]


def test_queues_and_agents():
    """No queue module: said plainly; one that reports: its rows."""
    plain = SimpleNamespace(modules=[trunk()])
    assert queues(plain).text() == "no queues configured"
    assert agents(plain).text().startswith("no queues configured")
    with_queue = SimpleNamespace(modules=[Queue()])
    assert rows(queues(with_queue)) == [["sales", "sales", "2", "31.5"]]
    header = queues(with_queue).text().splitlines()[0]
    assert header.split() == ["MODULE", "QUEUE", "WAITING", "LONGEST", "WAIT"]
    assert [r[2] for r in rows(agents(with_queue))] == ["talking", "idle"]


def test_route_explains_match_rewrite_and_module():
    """route(): the route that matched and its patterns, the rewrite, and each module
    in weight order until one takes the call; a module that cannot tell says so."""
    robot = Robot("robot", RobotSettings(number="300"))
    engine, _, _ = make_engine(Declines(), robot, trunk(numbers="2*"),
                               routes=[Route.from_fields("1000-1999", "99", out_to="2005")])
    text = explain_route(engine, "1001", "99")
    assert text[1] == "route #1: in_from '1000-1999' matches '1001', in_to '99' matches '99'"
    assert text[2] == "rewritten: To 99 -> 2005"
    assert "  robot (weight 80): not its call" in text
    assert any(line.endswith("cannot tell without placing a call") for line in text)
    assert text[-1] == ("  backend (weight 50): TAKES IT: number 2005 matches numbers '2*': sent to "
                        f"{BACKEND} as 2005")
    robot_text = explain_route(engine, "1001", "300")
    assert robot_text[1].startswith("route: none of the 1 routes matches")
    assert robot_text[-1].startswith("  robot (weight 80): TAKES IT: the robot's number 300")
    nobody = explain_route(engine, "1001", "777")
    assert nobody[-1].startswith("no module said it takes the call")


def test_registrar_explains_contacts_and_absence():
    """The registrar names the contacts it would ring, or the 480 of a known user
    with none."""
    engine, clock = registrar_with_bindings(None)
    [registrar] = engine.modules
    assert "rings user 1001 at 1 registered contact(s): sip:1001@10.0.0.5:5062 via udp:10.0.0.9:40000" in \
        explain_route(engine, "1000", "1001")[-1]
    clock.advance(400)
    gone = explain_route(engine, "1000", "1001")[-1]
    assert gone.endswith("refuses 480: user 1001 has no registered contact")
    assert registrar.explain_callout(routing_request("1", "555", "127.0.0.1")) is None


def test_originate_rings_the_first_then_connects_the_second():
    """originate(a, b): a rings and answers, then b is dialled with a's answer and
    the call is re-bridged to it; fires with the call id."""
    first = Robot("first", RobotSettings(number="300", answer_after=1, hangup_after=60))
    second = Robot("second", RobotSettings(number="301", answer_after=2, hangup_after=60))
    engine, _, clock = make_engine(first, second)
    connected: list = []
    engine.originate("300", "301").addBoth(connected.append)
    [call_id] = engine.calls
    assert rows(calls(engine))[0][3] == "setup"
    clock.advance(1)  # 300 answers
    clock.advance(0)
    assert connected == [] and rows(calls(engine))[0][3] == "rebridging"
    clock.advance(2)  # 301 answers
    assert connected == [call_id]
    record = engine.calls[call_id].record
    assert record.transfers == ["301"] and record.outbound_module == "first"
    assert [r[-4] for r in rows(calls(engine))] == ["first", "second"]
    assert len(first.calls) == 1 and len(second.calls) == 1


@pytest.mark.parametrize("a, b, status", [("999", "301", 404), ("300", "999", 404)])
def test_originate_failures(a, b, status):
    """Nobody takes the first or the second number: OriginateFailed, nothing left up."""
    robot = Robot("first", RobotSettings(number="300", answer_after=1))
    engine, _, clock = make_engine(robot, Robot("second", RobotSettings(number="301")))
    outcome: list = []
    engine.originate(a, b).addBoth(outcome.append)
    clock.advance(1)
    clock.advance(0)
    [failure] = outcome
    assert failure.check(OriginateFailed) and failure.value.status == status
    assert engine.calls == {} and robot.calls == set()
